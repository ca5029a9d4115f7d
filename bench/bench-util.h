/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What every benchmark program measures with. */

#include <stddef.h>
#include <stdint.h>

#include "svemig/error.h"
#include "svemig/guest.h"

/* CLOCK_MONOTONIC in seconds. */
double bench_now(void);
/* Decimal megabytes per second. */
double bench_mbps(uint64_t bytes, double seconds);
/* 0 for a file that does not exist. */
uint64_t bench_file_size(const char *path);
/* Memory faulted in up front: a first touch costs more than the work measured. Exits on failure. */
uint8_t *bench_alloc_populated(size_t size);
/* The best wall time of 'runs' runs of a shell command. Exits if it fails. */
double bench_time_command(const char *cmd, int runs);
/* Prints "<program>: <what>: <reason>" and exits 1. */
void bench_die(const char *what, const struct svemig_error *err, int r) __attribute__((noreturn));
/* Fills the guest's RAM from an image file of exactly its size. Exits on failure. */
void bench_load_image(struct guest *g, const char *path);

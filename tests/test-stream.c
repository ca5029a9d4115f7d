/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The stream format v1: round trips of vcpus and memory (full and dirty
 * rounds, every thread count), the golden file, and every kind of bad input
 * asserted by errno and message.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include <cmocka.h>

#include "macro.h"
#include "stream-content.h"
#include "stream/stream-internal.h"
#include "unaligned.h"
#include "stream.pb-c.h"
#include "svemig/kvmreg.h"
#include "svemig/stream.h"

#ifndef SVEMIG_TEST_DATA
#error "SVEMIG_TEST_DATA must name tests/data"
#endif

/* ---- Helpers ---- */

struct bytes {
        uint8_t *p;
        size_t len;
};

static int memfd_with(const struct bytes *b)
{
        int fd = memfd_create("stream", MFD_CLOEXEC);

        assert_true(fd >= 0);
        if (b && b->len)
                assert_int_equal(write(fd, b->p, b->len), (ssize_t)b->len);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        return fd;
}

static struct bytes fd_bytes(int fd)
{
        struct bytes b = {0};
        off_t end = lseek(fd, 0, SEEK_END);

        assert_true(end >= 0);
        b.len = (size_t)end;
        b.p = malloc(b.len + 1);
        assert_non_null(b.p);
        assert_int_equal(pread(fd, b.p, b.len, 0), (ssize_t)b.len);
        return b;
}

static struct bytes golden_bytes(unsigned n_threads)
{
        struct svemig_error err = {0};
        int fd = memfd_with(NULL);
        struct bytes b;

        if (golden_write(fd, n_threads, &err) < 0)
                fail_msg("golden_write: %s", err.msg);
        b = fd_bytes(fd);
        close(fd);
        return b;
}

static struct bytes copy_bytes(const struct bytes *b)
{
        struct bytes c = {malloc(b->len + 1), b->len};

        assert_non_null(c.p);
        memcpy(c.p, b->p, b->len);
        return c;
}

struct decoded {
        struct svemig_stream_info info;
        struct vcpu_state vcpus[16];
        unsigned n_vcpus;
        struct svemig_stream_stats stats;
        uint64_t offset;
};

static void decoded_done(struct decoded *d)
{
        for (unsigned i = 0; i < d->n_vcpus; i++)
                vcpu_state_done(&d->vcpus[i]);
        d->n_vcpus = 0;
}

/* Reads a whole stream; memory goes to map (NULL: check only). */
static int decode_fd(int fd, unsigned n_threads, const struct svemig_mem_map *map, size_t n_map,
                     struct decoded *d, struct svemig_error *err)
{
        struct svemig_stream_read_opts opts = {.n_threads = n_threads};
        struct svemig_stream_reader *r = NULL;
        int k;

        memset(d, 0, sizeof(*d));
        k = svemig_stream_reader_open(fd, &opts, &r, err);
        if (k < 0)
                return k;
        d->info = *svemig_stream_reader_info(r);
        d->info.slots = NULL;
        d->info.id_regs = NULL;
        while ((k = svemig_stream_next(r, err)) > 0) {
                if (k == SVEMIG_FRAME_VCPU) {
                        assert_true(d->n_vcpus < ELEMENTSOF(d->vcpus));
                        k = svemig_stream_read_vcpu(r, &d->vcpus[d->n_vcpus], err);
                        if (k == 0)
                                d->n_vcpus++;
                } else if (k == SVEMIG_FRAME_MEMORY) {
                        k = svemig_stream_read_memory(r, map, n_map, err);
                }
                if (k < 0)
                        break;
        }
        d->stats = *svemig_stream_reader_stats(r);
        d->offset = svemig_stream_reader_offset(r);
        svemig_stream_reader_free(r);
        return k;
}

static int decode_bytes(const struct bytes *b, unsigned n_threads, struct svemig_error *err)
{
        struct decoded d;
        int fd = memfd_with(b), k;

        k = decode_fd(fd, n_threads, NULL, 0, &d, err);
        decoded_done(&d);
        close(fd);
        return k;
}

static void assert_vcpu_equal(const struct vcpu_state *a, const struct vcpu_state *b)
{
        assert_int_equal(a->index, b->index);
        assert_int_equal(a->features, b->features);
        assert_int_equal(a->mp_state, b->mp_state);
        assert_true(vqset_equal(&a->vls, &b->vls));
        assert_int_equal(a->n_regs, b->n_regs);
        for (size_t i = 0; i < a->n_regs; i++) {
                assert_int_equal(a->regs[i].id, b->regs[i].id);
                assert_int_equal(a->regs[i].size, b->regs[i].size);
                assert_memory_equal(a->regs[i].value, b->regs[i].value, a->regs[i].size);
        }
}

static void assert_msg(const struct svemig_error *err, const char *needle)
{
        if (!strstr(err->msg, needle))
                fail_msg("expected \"%s\" in: %s", needle, err->msg);
}

static void basic_info(struct svemig_stream_info *info, const struct svemig_stream_slot *slots,
                       size_t n_slots, unsigned n_vcpus)
{
        memset(info, 0, sizeof(*info));
        strcpy(info->host_name, "test-host");
        strcpy(info->hypervisor, "sim");
        info->vcpu_count = n_vcpus;
        info->slots = slots;
        info->n_slots = n_slots;
        info->compression = SVEMIG_COMPRESSION_LZ4;
        info->created_ns = 1;
}

/* ---- Round trips ---- */

static void roundtrip_vcpus(enum svemig_compression comp, const vqset_t *vls, uint64_t seed)
{
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct svemig_stream_info info;
        struct vcpu_state in[3];
        struct decoded d;
        int fd = memfd_with(NULL);

        basic_info(&info, NULL, 0, 3);
        info.compression = comp;
        info.guest_vls = *vls;
        info.guest_max_vq = vqset_highest(vls);
        assert_int_equal(svemig_stream_writer_open(fd, &info, NULL, &w, &err), 0);
        for (unsigned i = 0; i < 3; i++) {
                assert_int_equal(content_vcpu(i, vls, seed + i, &in[i]), 0);
                assert_int_equal(svemig_stream_write_vcpu(w, &in[i], &err), 0);
        }
        assert_int_equal(svemig_stream_writer_finish(w, &err), 0);
        svemig_stream_writer_free(w);

        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        if (decode_fd(fd, 2, NULL, 0, &d, &err) != 0)
                fail_msg("decode: %s", err.msg);
        assert_int_equal(d.n_vcpus, 3);
        assert_true(vqset_equal(&d.info.guest_vls, vls));
        for (unsigned i = 0; i < 3; i++) {
                assert_vcpu_equal(&in[i], &d.vcpus[i]);
                vcpu_state_done(&in[i]);
        }
        assert_int_equal(d.stats.digest_bytes, 16);
        decoded_done(&d);
        close(fd);
}

static void test_roundtrip_vcpus(void **state)
{
        static const char *const sets[] = {"none", "128", "128,256,512", "128-2048", "vq1,vq2,vq3,vq4,vq8"};
        uint64_t seed = 12345;

        for (size_t i = 0; i < ELEMENTSOF(sets); i++) {
                vqset_t vls;
                assert_int_equal(vqset_parse(sets[i], &vls, NULL), 0);
                roundtrip_vcpus(SVEMIG_COMPRESSION_LZ4, &vls, content_rand(&seed));
                roundtrip_vcpus(SVEMIG_COMPRESSION_NONE, &vls, content_rand(&seed));
        }
}

#define RT_SLOTS 3
static const struct svemig_stream_slot rt_slots[RT_SLOTS] = {
        {.id = 0, .gpa = 0x40000000ull, .size = 300 * 4096ull},
        {.id = 5, .gpa = 0x100000000ull, .size = 70 * 4096ull},
        {.id = 9, .gpa = 0x200000000ull, .size = 33 * 4096ull},
};

/* Slot 0: the mixed content; slot 5: random (incompressible); slot 9: zero. */
static void rt_fill(uint8_t *mem[RT_SLOTS])
{
        uint64_t rng = 99;

        for (unsigned s = 0; s < RT_SLOTS; s++) {
                mem[s] = malloc(rt_slots[s].size);
                assert_non_null(mem[s]);
        }
        content_memory(0, mem[0], rt_slots[0].size / 4096, 0);
        content_fill_random(mem[1], rt_slots[1].size, &rng);
        memset(mem[2], 0, rt_slots[2].size);
}

static void rt_alloc_dest(uint8_t *dst[RT_SLOTS], struct svemig_mem_map map[RT_SLOTS])
{
        for (unsigned s = 0; s < RT_SLOTS; s++) {
                dst[s] = malloc(rt_slots[s].size);
                assert_non_null(dst[s]);
                memset(dst[s], 0xaa, rt_slots[s].size); /* zero pages must really be written */
                map[s] = (struct svemig_mem_map){rt_slots[s].id, rt_slots[s].gpa, dst[s], rt_slots[s].size};
        }
}

static void test_roundtrip_memory(void **state)
{
        static const unsigned threads[] = {1, 2, 5};

        for (size_t t = 0; t < ELEMENTSOF(threads); t++) {
                struct svemig_stream_write_opts opts = {.n_threads = threads[t]};
                struct svemig_stream_writer *w = NULL;
                struct svemig_error err = {0};
                struct svemig_mem_range ranges[RT_SLOTS];
                struct svemig_mem_map map[RT_SLOTS];
                uint8_t *mem[RT_SLOTS], *dst[RT_SLOTS];
                struct svemig_stream_info info;
                const struct svemig_stream_stats *ws;
                uint64_t zero = 0, pages = 0, lz4_pages;
                struct decoded d;
                int fd = memfd_with(NULL);

                rt_fill(mem);
                basic_info(&info, rt_slots, RT_SLOTS, 0);
                assert_int_equal(svemig_stream_writer_open(fd, &info, &opts, &w, &err), 0);
                for (unsigned s = 0; s < RT_SLOTS; s++) {
                        ranges[s] = (struct svemig_mem_range){rt_slots[s].id, rt_slots[s].gpa, mem[s],
                                                              rt_slots[s].size, NULL};
                        pages += rt_slots[s].size / 4096;
                        for (size_t i = 0; i < rt_slots[s].size / 4096; i++) {
                                static const uint8_t z[4096];
                                zero += memcmp(mem[s] + i * 4096, z, 4096) == 0;
                        }
                }
                assert_int_equal(svemig_stream_write_memory(w, ranges, RT_SLOTS, &err), 0);
                assert_int_equal(svemig_stream_writer_finish(w, &err), 0);
                ws = svemig_stream_writer_stats(w);
                assert_int_equal(ws->mem_pages, pages);
                assert_int_equal(ws->zero_pages, zero);
                /* The mixed slot's chunks hold LZ4 pages and raw ones; the random slot's only raw pages. */
                assert_true(ws->lz4_chunks > 0);
                assert_true(ws->lz4_chunks < ws->mem_chunks);
                assert_true(ws->lz4_pages > 0);
                assert_true(ws->lz4_pages < pages - zero - rt_slots[1].size / 4096);
                lz4_pages = ws->lz4_pages;
                svemig_stream_writer_free(w);

                rt_alloc_dest(dst, map);
                assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
                if (decode_fd(fd, threads[t], map, RT_SLOTS, &d, &err) != 0)
                        fail_msg("decode: %s", err.msg);
                assert_int_equal(d.stats.mem_pages, pages);
                assert_int_equal(d.stats.zero_pages, zero);
                assert_int_equal(d.stats.lz4_pages, lz4_pages);
                for (unsigned s = 0; s < RT_SLOTS; s++) {
                        assert_memory_equal(dst[s], mem[s], rt_slots[s].size);
                        free(mem[s]);
                        free(dst[s]);
                }
                decoded_done(&d);
                close(fd);
        }
}

/* Pre-copy: a full round, then rounds of dirty pages that rewrite the same pages, some to zero. */
static void test_dirty_rounds(void **state)
{
        struct svemig_stream_write_opts opts = {.n_threads = 3};
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct svemig_mem_range ranges[RT_SLOTS];
        struct svemig_mem_map map[RT_SLOTS];
        uint8_t *mem[RT_SLOTS], *dst[RT_SLOTS];
        uint64_t *dirty[RT_SLOTS];
        struct svemig_stream_info info;
        uint64_t rng = 7, pages_sent = 0;
        struct decoded d;
        int fd = memfd_with(NULL);

        rt_fill(mem);
        basic_info(&info, rt_slots, RT_SLOTS, 0);
        info.chunk_pages = 16;
        assert_int_equal(svemig_stream_writer_open(fd, &info, &opts, &w, &err), 0);
        for (unsigned s = 0; s < RT_SLOTS; s++) {
                ranges[s] = (struct svemig_mem_range){rt_slots[s].id, rt_slots[s].gpa, mem[s],
                                                      rt_slots[s].size, NULL};
                dirty[s] = calloc(DIV_ROUND_UP(rt_slots[s].size / 4096, 64), 8);
                assert_non_null(dirty[s]);
        }
        assert_int_equal(svemig_stream_write_memory(w, ranges, RT_SLOTS, &err), 0);
        pages_sent = svemig_stream_writer_stats(w)->mem_pages;

        for (unsigned round = 1; round <= 4; round++) {
                uint64_t n_dirty = 0;

                for (unsigned s = 0; s < RT_SLOTS; s++) {
                        size_t n = rt_slots[s].size / 4096;

                        memset(dirty[s], 0, DIV_ROUND_UP(n, 64) * 8);
                        for (size_t i = 0; i < n; i++) {
                                uint64_t x = content_rand(&rng) % 8;
                                if (x > 1)
                                        continue;
                                dirty[s][i / 64] |= 1ull << (i % 64);
                                n_dirty++;
                                if (x == 0)
                                        memset(mem[s] + i * 4096, 0, 4096);
                                else
                                        content_fill_random(mem[s] + i * 4096, 4096, &rng);
                        }
                        ranges[s].dirty = dirty[s];
                }
                assert_int_equal(svemig_stream_write_memory(w, ranges, RT_SLOTS, &err), 0);
                pages_sent += n_dirty;
                assert_int_equal(svemig_stream_writer_stats(w)->mem_pages, pages_sent);
        }
        /* An all-clean round writes nothing. */
        {
                uint64_t chunks = svemig_stream_writer_stats(w)->mem_chunks;
                for (unsigned s = 0; s < RT_SLOTS; s++)
                        memset(dirty[s], 0, DIV_ROUND_UP(rt_slots[s].size / 4096, 64) * 8);
                assert_int_equal(svemig_stream_write_memory(w, ranges, RT_SLOTS, &err), 0);
                assert_int_equal(svemig_stream_writer_stats(w)->mem_chunks, chunks);
        }
        assert_int_equal(svemig_stream_writer_finish(w, &err), 0);
        svemig_stream_writer_free(w);

        rt_alloc_dest(dst, map);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        if (decode_fd(fd, 4, map, RT_SLOTS, &d, &err) != 0)
                fail_msg("decode: %s", err.msg);
        assert_int_equal(d.stats.mem_pages, pages_sent);
        for (unsigned s = 0; s < RT_SLOTS; s++) {
                assert_memory_equal(dst[s], mem[s], rt_slots[s].size);
                free(mem[s]);
                free(dst[s]);
                free(dirty[s]);
        }
        decoded_done(&d);
        close(fd);
}

/* The bytes do not depend on the thread count. */
static void test_deterministic(void **state)
{
        struct bytes a = golden_bytes(1), b = golden_bytes(4);

        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.p, b.p, a.len);
        free(a.p);
        free(b.p);
}

struct pipe_writer {
        int fd;
        int rc;
};

static void *pipe_writer_main(void *arg)
{
        struct pipe_writer *pw = arg;
        struct svemig_error err = {0};

        pw->rc = golden_write(pw->fd, 2, &err);
        if (pw->rc == 0 && write(pw->fd, "NEXT", 4) != 4)
                pw->rc = -EIO;
        close(pw->fd);
        return NULL;
}

/* A pipe cannot seek; the reader must also leave what follows the trailer unread. */
static void test_pipe(void **state)
{
        uint8_t *dst[GOLDEN_SLOTS], *want;
        struct svemig_mem_map map[GOLDEN_SLOTS];
        struct svemig_error err = {0};
        struct pipe_writer pw;
        struct decoded d;
        pthread_t t;
        char rest[8] = {0};
        int p[2];

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        pw.fd = p[1];
        assert_int_equal(pthread_create(&t, NULL, pipe_writer_main, &pw), 0);
        for (unsigned s = 0; s < GOLDEN_SLOTS; s++) {
                dst[s] = calloc(1, golden_slots[s].size);
                map[s] = (struct svemig_mem_map){golden_slots[s].id, golden_slots[s].gpa, dst[s],
                                                 golden_slots[s].size};
        }
        if (decode_fd(p[0], 2, map, GOLDEN_SLOTS, &d, &err) != 0)
                fail_msg("decode from a pipe: %s", err.msg);
        assert_int_equal(read(p[0], rest, sizeof(rest)), 4);
        assert_string_equal(rest, "NEXT");
        pthread_join(t, NULL);
        assert_int_equal(pw.rc, 0);
        for (unsigned s = 0; s < GOLDEN_SLOTS; s++) {
                want = malloc(golden_slots[s].size);
                golden_final_memory(s, want);
                assert_memory_equal(dst[s], want, golden_slots[s].size);
                free(want);
                free(dst[s]);
        }
        decoded_done(&d);
        close(p[0]);
}

/* The rt slots written in one call with the given compression; mem receives the content. */
static struct bytes rt_stream(enum svemig_compression comp, uint8_t *mem[RT_SLOTS])
{
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct svemig_mem_range ranges[RT_SLOTS];
        struct svemig_stream_info info;
        int fd = memfd_with(NULL);
        struct bytes b;

        rt_fill(mem);
        basic_info(&info, rt_slots, RT_SLOTS, 0);
        info.compression = comp;
        assert_int_equal(svemig_stream_writer_open(fd, &info, NULL, &w, &err), 0);
        for (unsigned s = 0; s < RT_SLOTS; s++)
                ranges[s] = (struct svemig_mem_range){rt_slots[s].id, rt_slots[s].gpa, mem[s],
                                                      rt_slots[s].size, NULL};
        assert_int_equal(svemig_stream_write_memory(w, ranges, RT_SLOTS, &err), 0);
        assert_int_equal(svemig_stream_writer_finish(w, &err), 0);
        svemig_stream_writer_free(w);
        b = fd_bytes(fd);
        close(fd);
        return b;
}

struct frame_census {
        unsigned plain, page_lz4;
};

/* Walks a stream's frames: MEMORY frames with LZ4 pages say so in their flags and since_minor, the rest
 * as 1.0. */
static struct frame_census census(const struct bytes *b)
{
        struct frame_census n = {0};
        size_t off = 16 + get_le32(b->p + 12) + 8;

        for (;;) {
                uint16_t type = get_le16(b->p + off), since = get_le16(b->p + off + 2);
                uint32_t flags = get_le32(b->p + off + 4);

                if (type == SVEMIG_FRAME_TRAILER)
                        return n;
                if (type == SVEMIG_FRAME_MEMORY && (flags & FRAME_F_PAGE_LZ4)) {
                        assert_int_equal(since, 1);
                        assert_false(flags & FRAME_F_LZ4);
                        n.page_lz4++;
                } else {
                        assert_int_equal(since, 0);
                        assert_false(flags & FRAME_F_PAGE_LZ4);
                        n.plain++;
                }
                off += FRAME_HEAD_SIZE + get_le32(b->p + off + 8) + FRAME_TAIL_SIZE;
                assert_true(off + FRAME_HEAD_SIZE <= b->len);
        }
}

/*
 * LZ4 pages (1.1): chunks mixing LZ4, raw and zero pages set flag PAGE_LZ4
 * and since_minor 1, which 1.0 readers refuse cleanly; chunks without an
 * LZ4 page (all random, all zero), and every chunk without compression, are
 * 1.0 chunks that 1.0 readers still read. Each decodes to the same memory.
 */
static void test_page_coding(void **state)
{
        static const enum svemig_compression comps[] = {SVEMIG_COMPRESSION_LZ4, SVEMIG_COMPRESSION_NONE};
        size_t raw_size = 0;

        for (size_t i = 0; i < ELEMENTSOF(comps); i++) {
                uint8_t *mem[RT_SLOTS], *dst[RT_SLOTS];
                struct svemig_mem_map map[RT_SLOTS];
                struct svemig_error err = {0};
                struct bytes b = rt_stream(comps[i], mem);
                struct frame_census n = census(&b);
                struct decoded d;
                int fd = memfd_with(&b);

                if (comps[i] == SVEMIG_COMPRESSION_LZ4) {
                        assert_true(n.page_lz4 > 0); /* slot 0 */
                        assert_true(n.plain >= 2);   /* slots 5 and 9 */
                        raw_size = b.len;
                } else {
                        assert_int_equal(n.page_lz4, 0);
                        /* LZ4 pages made the mixed slot smaller; random pages cost no more than raw. */
                        assert_true(raw_size < b.len);
                }
                rt_alloc_dest(dst, map);
                if (decode_fd(fd, 3, map, RT_SLOTS, &d, &err) != 0)
                        fail_msg("decode: %s", err.msg);
                assert_int_equal(d.stats.lz4_pages > 0, comps[i] == SVEMIG_COMPRESSION_LZ4);
                for (unsigned s = 0; s < RT_SLOTS; s++) {
                        assert_memory_equal(dst[s], mem[s], rt_slots[s].size);
                        free(mem[s]);
                        free(dst[s]);
                }
                decoded_done(&d);
                close(fd);
                free(b.p);
        }
}

/* A page that LZ4 cannot shrink costs its page_size bytes and nothing more: the slot of random pages. */
static void test_random_pages_raw(void **state)
{
        static const struct svemig_stream_slot slot = {.id = 1, .gpa = 0x10000000ull, .size = 64 * 4096ull};
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct svemig_stream_info info;
        uint8_t *mem = malloc(slot.size);
        struct svemig_mem_range rg = {slot.id, slot.gpa, mem, slot.size, NULL};
        const struct svemig_stream_stats *ws;
        uint64_t rng = 5;
        int fd = memfd_with(NULL);

        assert_non_null(mem);
        content_fill_random(mem, slot.size, &rng);
        basic_info(&info, &slot, 1, 0);
        assert_int_equal(svemig_stream_writer_open(fd, &info, NULL, &w, &err), 0);
        assert_int_equal(svemig_stream_write_memory(w, &rg, 1, &err), 0);
        ws = svemig_stream_writer_stats(w);
        assert_int_equal(ws->lz4_pages, 0);
        assert_int_equal(ws->lz4_chunks, 0);
        /* One chunk: the head, slot/gpa/page_count, data's tag and length, the tail. */
        assert_int_equal(ws->mem_chunks, 1);
        assert_true(ws->mem_stored <= slot.size + FRAME_HEAD_SIZE + FRAME_TAIL_SIZE + 24);
        svemig_stream_writer_free(w);
        free(mem);
        close(fd);
}

/* A page random in its first half and regular in its second still compresses (on its own, to under a page).
 */
static void test_half_random_page(void **state)
{
        static const struct svemig_stream_slot slot = {.id = 1, .gpa = 0x10000000ull, .size = 4096};
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct svemig_stream_info info;
        uint8_t page[4096], back[4096];
        struct svemig_mem_range rg = {slot.id, slot.gpa, page, slot.size, NULL};
        struct svemig_mem_map map = {slot.id, slot.gpa, back, sizeof(back)};
        struct decoded d;
        uint64_t rng = 11;
        int fd = memfd_with(NULL);

        content_fill_random(page, 2048, &rng);
        for (size_t i = 2048; i < sizeof(page); i++)
                page[i] = (uint8_t)(i % 7);
        basic_info(&info, &slot, 1, 0);
        assert_int_equal(svemig_stream_writer_open(fd, &info, NULL, &w, &err), 0);
        assert_int_equal(svemig_stream_write_memory(w, &rg, 1, &err), 0);
        assert_int_equal(svemig_stream_writer_finish(w, &err), 0);
        assert_int_equal(svemig_stream_writer_stats(w)->lz4_pages, 1);
        assert_true(svemig_stream_writer_stats(w)->mem_stored < 2048 + 200);
        svemig_stream_writer_free(w);

        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        if (decode_fd(fd, 1, &map, 1, &d, &err) != 0)
                fail_msg("decode: %s", err.msg);
        assert_memory_equal(back, page, sizeof(page));
        decoded_done(&d);
        close(fd);
}

struct progress_log {
        uint64_t last, total;
        unsigned calls, stop_at;
};

static int log_progress(void *userdata, uint64_t done, uint64_t total)
{
        struct progress_log *l = userdata;

        assert_true(done > l->last);
        assert_true(done <= total);
        if (l->total)
                assert_int_equal(total, l->total);
        l->last = done;
        l->total = total;
        return ++l->calls == l->stop_at ? -ECANCELED : 0;
}

/* The writer's progress: per frame, in order, up to the ranges' total; a negative return stops and spends
 * it. */
static void test_progress(void **state)
{
        for (unsigned stop_at = 0; stop_at <= 2; stop_at += 2) {
                struct progress_log log = {.stop_at = stop_at};
                struct svemig_stream_write_opts opts = {
                        .n_threads = 2, .progress = log_progress, .userdata = &log};
                struct svemig_stream_writer *w = NULL;
                struct svemig_error err = {0};
                struct svemig_mem_range ranges[RT_SLOTS];
                struct svemig_stream_info info;
                uint8_t *mem[RT_SLOTS];
                uint64_t total = 0;
                int fd = memfd_with(NULL);

                rt_fill(mem);
                basic_info(&info, rt_slots, RT_SLOTS, 0);
                assert_int_equal(svemig_stream_writer_open(fd, &info, &opts, &w, &err), 0);
                for (unsigned s = 0; s < RT_SLOTS; s++) {
                        ranges[s] = (struct svemig_mem_range){rt_slots[s].id, rt_slots[s].gpa, mem[s],
                                                              rt_slots[s].size, NULL};
                        total += rt_slots[s].size;
                }
                if (stop_at == 0) {
                        assert_int_equal(svemig_stream_write_memory(w, ranges, RT_SLOTS, &err), 0);
                        assert_int_equal(log.calls, svemig_stream_writer_stats(w)->mem_chunks);
                        assert_int_equal(log.last, total);
                        assert_int_equal(log.total, total);
                        assert_int_equal(svemig_stream_writer_finish(w, &err), 0);
                } else {
                        assert_int_equal(svemig_stream_write_memory(w, ranges, RT_SLOTS, &err), -ECANCELED);
                        assert_msg(&err, "stopped at 0x");
                        assert_int_equal(log.calls, stop_at);
                        assert_int_equal(svemig_stream_writer_finish(w, &err), -ECANCELED);
                }
                svemig_stream_writer_free(w);
                for (unsigned s = 0; s < RT_SLOTS; s++)
                        free(mem[s]);
                close(fd);
        }
}

/* ---- The golden file ---- */

/* The golden files: v1.0 (stream-v1.svemig), v1.1 with LZ4 pages, v1.2 with device state. */
#define GOLDEN_V1_0 "stream-v1.svemig"
#define GOLDEN_V1_1 "stream-v1.1.svemig"
#define GOLDEN_V1_2 "stream-v1.2.svemig"

static struct bytes read_golden(const char *name)
{
        char path[4096];
        int fd;
        struct bytes b;

        snprintf(path, sizeof(path), "%s/%s", SVEMIG_TEST_DATA, name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                fail_msg("%s: %m (make it with scripts/make-golden.sh)", path);
        b = fd_bytes(fd);
        close(fd);
        return b;
}

static struct bytes read_golden_file(void)
{
        return read_golden(GOLDEN_V1_0);
}

/* The pending device frame k of a golden file equals tests/stream-content.c's; returns its bit. */
static unsigned check_golden_device(struct svemig_stream_reader *r, int k)
{
        struct svemig_error err = {0};

        if (k == SVEMIG_FRAME_VGIC) {
                struct vgic_state got, want;

                if (svemig_stream_read_vgic(r, &got, &err) < 0)
                        fail_msg("golden VGIC: %s", err.msg);
                assert_int_equal(golden_vgic(&want), 0);
                assert_int_equal(got.nr_irqs, want.nr_irqs);
                assert_int_equal(got.n_regs, want.n_regs);
                assert_memory_equal(got.regs, want.regs, want.n_regs * sizeof(*want.regs));
                assert_int_equal(got.n_levels, want.n_levels);
                assert_memory_equal(got.spi_levels, want.spi_levels,
                                    want.n_levels * sizeof(*want.spi_levels));
                assert_int_equal(got.n_cpus, want.n_cpus);
                for (size_t c = 0; c < want.n_cpus; c++) {
                        assert_int_equal(got.cpus[c].mpidr, want.cpus[c].mpidr);
                        assert_int_equal(got.cpus[c].ppi_level, want.cpus[c].ppi_level);
                        assert_int_equal(got.cpus[c].n_regs, want.cpus[c].n_regs);
                        assert_memory_equal(got.cpus[c].regs, want.cpus[c].regs,
                                            want.cpus[c].n_regs * sizeof(*want.cpus[c].regs));
                        assert_int_equal(got.cpus[c].n_sysregs, want.cpus[c].n_sysregs);
                        for (size_t i = 0; i < want.cpus[c].n_sysregs; i++) {
                                assert_int_equal(got.cpus[c].sysregs[i].instr,
                                                 want.cpus[c].sysregs[i].instr);
                                assert_int_equal(got.cpus[c].sysregs[i].value,
                                                 want.cpus[c].sysregs[i].value);
                        }
                }
                vgic_state_done(&got);
                vgic_state_done(&want);
        } else if (k == SVEMIG_FRAME_TIMERS) {
                struct timer_state got, want;

                if (svemig_stream_read_timers(r, &got, &err) < 0)
                        fail_msg("golden TIMERS: %s", err.msg);
                assert_int_equal(golden_timers(&want), 0);
                assert_int_equal(got.counter, want.counter);
                assert_int_equal(got.frequency_hz, want.frequency_hz);
                assert_int_equal(got.n_vcpus, want.n_vcpus);
                for (size_t i = 0; i < want.n_vcpus; i++) {
                        const struct timer_vcpu_state *a = &got.vcpus[i], *b = &want.vcpus[i];

                        assert_int_equal(a->vtimer_ctl, b->vtimer_ctl);
                        assert_int_equal(a->vtimer_cval, b->vtimer_cval);
                        assert_int_equal(a->has_ptimer, b->has_ptimer);
                        assert_int_equal(a->ptimer_ctl, b->ptimer_ctl);
                        assert_int_equal(a->ptimer_cval, b->ptimer_cval);
                        assert_int_equal(a->vtimer_irq, b->vtimer_irq);
                        assert_int_equal(a->ptimer_irq, b->ptimer_irq);
                }
                timer_state_done(&got);
                timer_state_done(&want);
        } else if (k == SVEMIG_FRAME_CONSOLE) {
                struct console_state got, want;

                if (svemig_stream_read_console(r, &got, &err) < 0)
                        fail_msg("golden CONSOLE: %s", err.msg);
                assert_int_equal(golden_console(&want), 0);
                assert_int_equal(got.kind, want.kind);
                assert_int_equal(got.base, want.base);
                assert_int_equal(got.irq, want.irq);
                assert_int_equal(got.n_regs, want.n_regs);
                assert_memory_equal(got.regs, want.regs, want.n_regs * sizeof(*want.regs));
                assert_int_equal(got.rx_len, want.rx_len);
                assert_memory_equal(got.rx, want.rx, want.rx_len);
                assert_int_equal(got.tx_len, want.tx_len);
                assert_memory_equal(got.tx, want.tx, want.tx_len);
                console_state_done(&got);
                console_state_done(&want);
        } else {
                struct virtio_dev_state got, want;

                assert_int_equal(k, SVEMIG_FRAME_VIRTIO);
                if (svemig_stream_read_virtio(r, &got, &err) < 0)
                        fail_msg("golden VIRTIO: %s", err.msg);
                assert_int_equal(golden_virtio(got.index, &want), 0);
                assert_int_equal(got.device_id, want.device_id);
                assert_int_equal(got.base, want.base);
                assert_int_equal(got.driver_features, want.driver_features);
                assert_int_equal(got.status, want.status);
                assert_int_equal(got.config_len, want.config_len);
                assert_memory_equal(got.config, want.config, want.config_len);
                assert_int_equal(got.n_queues, want.n_queues);
                for (size_t q = 0; q < want.n_queues; q++) {
                        const struct virtio_queue_state *a = &got.queues[q], *b = &want.queues[q];

                        assert_int_equal(a->num, b->num);
                        assert_int_equal(a->desc, b->desc);
                        assert_int_equal(a->driver, b->driver);
                        assert_int_equal(a->device, b->device);
                        assert_int_equal(a->last_avail_idx, b->last_avail_idx);
                        assert_int_equal(a->used_idx, b->used_idx);
                        assert_int_equal(a->n_inflight, b->n_inflight);
                        if (b->n_inflight)
                                assert_memory_equal(a->inflight, b->inflight,
                                                    b->n_inflight * sizeof(*b->inflight));
                }
                k += (int)got.index; /* one bit per device */
                virtio_dev_state_done(&got);
                virtio_dev_state_done(&want);
        }
        return 1u << (k - SVEMIG_FRAME_VGIC);
}

/* Decodes a golden file and compares every field, register and page with tests/stream-content.c. */
static void check_golden(const char *name, unsigned minor)
{
        unsigned devices = 0;
        struct bytes g = read_golden(name);
        int fd = memfd_with(&g);
        struct svemig_stream_reader *r = NULL;
        struct svemig_error err = {0};
        const struct svemig_stream_info *got;
        struct svemig_stream_info want;
        uint8_t *dst[GOLDEN_SLOTS];
        struct svemig_mem_map map[GOLDEN_SLOTS];
        unsigned vcpus = 0, memory_reads = 0;
        int k;

        if (svemig_stream_reader_open(fd, NULL, &r, &err) < 0)
                fail_msg("golden %s: %s", name, err.msg);
        got = svemig_stream_reader_info(r);
        golden_info(&want);
        assert_int_equal(got->major, 1);
        assert_int_equal(got->minor, minor);
        assert_string_equal(got->producer_name, want.producer_name);
        assert_string_equal(got->producer_version, want.producer_version);
        assert_string_equal(got->host_name, want.host_name);
        assert_string_equal(got->source_kernel, want.source_kernel);
        assert_string_equal(got->hypervisor, want.hypervisor);
        assert_string_equal(got->purpose, want.purpose);
        assert_true(vqset_equal(&got->host_vls, &want.host_vls));
        assert_true(vqset_equal(&got->guest_vls, &want.guest_vls));
        assert_int_equal(got->guest_max_vq, want.guest_max_vq);
        assert_int_equal(got->vcpu_features, want.vcpu_features);
        assert_int_equal(got->vcpu_count, want.vcpu_count);
        assert_int_equal(got->page_size, want.page_size);
        assert_int_equal(got->chunk_pages, want.chunk_pages);
        assert_int_equal(got->compression, want.compression);
        assert_int_equal(got->digest, want.digest);
        assert_int_equal(got->created_ns, want.created_ns);
        assert_int_equal(got->n_slots, want.n_slots);
        assert_memory_equal(got->slots, want.slots, want.n_slots * sizeof(*want.slots));
        assert_int_equal(got->n_id_regs, want.n_id_regs);
        for (size_t i = 0; i < want.n_id_regs; i++) {
                assert_int_equal(got->id_regs[i].id, want.id_regs[i].id);
                assert_int_equal(got->id_regs[i].size, want.id_regs[i].size);
                assert_memory_equal(got->id_regs[i].value, want.id_regs[i].value, want.id_regs[i].size);
        }

        for (unsigned s = 0; s < GOLDEN_SLOTS; s++) {
                dst[s] = malloc(golden_slots[s].size);
                memset(dst[s], 0x55, golden_slots[s].size);
                map[s] = (struct svemig_mem_map){golden_slots[s].id, golden_slots[s].gpa, dst[s],
                                                 golden_slots[s].size};
        }
        while ((k = svemig_stream_next(r, &err)) > 0) {
                if (k == SVEMIG_FRAME_VCPU) {
                        struct vcpu_state st, exp;
                        assert_int_equal(svemig_stream_read_vcpu(r, &st, &err), 0);
                        assert_int_equal(golden_vcpu(st.index, &exp), 0);
                        assert_int_equal(st.index, vcpus);
                        assert_vcpu_equal(&st, &exp);
                        vcpu_state_done(&st);
                        vcpu_state_done(&exp);
                        vcpus++;
                } else if (k != SVEMIG_FRAME_MEMORY) {
                        assert_true(minor >= 2);
                        devices |= check_golden_device(r, k);
                } else {
                        if (svemig_stream_read_memory(r, map, GOLDEN_SLOTS, &err) < 0)
                                fail_msg("golden memory: %s", err.msg);
                        memory_reads++;
                }
        }
        if (k < 0)
                fail_msg("golden: %s", err.msg);
        assert_int_equal(vcpus, GOLDEN_VCPUS);
        assert_int_equal(memory_reads, 2); /* round 0 before the vcpus, round 1 after */
        /* 1.2: VGIC, TIMERS, CONSOLE and both VIRTIO devices, each once; the header lists their kinds. */
        assert_int_equal(devices, minor >= 2 ? 0x1f : 0);
        assert_int_equal(got->devices, minor >= 2);
        for (unsigned s = 0; s < GOLDEN_SLOTS; s++) {
                uint8_t *exp = malloc(golden_slots[s].size);
                golden_final_memory(s, exp);
                assert_memory_equal(dst[s], exp, golden_slots[s].size);
                free(exp);
                free(dst[s]);
        }
        assert_int_equal(svemig_stream_reader_stats(r)->digest_bytes, 16);
        assert_int_equal(svemig_stream_reader_stats(r)->skipped, 0);
        /* 1.0 compressed whole frames; 1.1 pages on their own, keeping incompressible ones raw. */
        if (minor == 0) {
                assert_int_equal(svemig_stream_reader_stats(r)->lz4_pages, 0);
        } else {
                const struct svemig_stream_stats *st = svemig_stream_reader_stats(r);
                assert_true(st->lz4_pages > 0);
                assert_true(st->lz4_pages < st->mem_pages - st->zero_pages);
        }
        svemig_stream_reader_free(r);
        close(fd);
        free(g.p);
}

static void test_golden(void **state)
{
        check_golden(GOLDEN_V1_0, 0);
}

/* Every later build reads v1.1; while this is the version written, the file is exactly what the writer
 * writes. */
static void test_golden_v1_1(void **state)
{
        check_golden(GOLDEN_V1_1, 1);
        if (SVEMIG_STREAM_MINOR == 1) {
                struct bytes g = read_golden(GOLDEN_V1_1), b = golden_bytes(2);

                assert_int_equal(b.len, g.len);
                assert_memory_equal(b.p, g.p, g.len);
                free(b.p);
                free(g.p);
        }
}

/* Every later build reads v1.2; while this is the version written, the file is exactly what the writer
 * writes. */
static void test_golden_v1_2(void **state)
{
        check_golden(GOLDEN_V1_2, 2);
        if (SVEMIG_STREAM_MINOR == 2) {
                struct bytes g = read_golden(GOLDEN_V1_2), b = golden_bytes(2);

                assert_int_equal(b.len, g.len);
                assert_memory_equal(b.p, g.p, g.len);
                free(b.p);
                free(g.p);
        }
}

/* ---- Bad input ---- */

static void expect_fail(const struct bytes *b, int code, const char *needle)
{
        struct svemig_error err = {0};
        int k = decode_bytes(b, 2, &err);

        if (k != -code)
                fail_msg("expected %s, got %d (%s): %s", strerror(code), k, k < 0 ? strerror(-k) : "ok",
                         err.msg);
        assert_int_equal(err.code, code);
        if (needle)
                assert_msg(&err, needle);
}

static void test_bad_magic(void **state)
{
        struct bytes g = read_golden_file(), b;
        uint8_t *p;

        b = copy_bytes(&g);
        memcpy(b.p, "PK\x03\x04", 4);
        expect_fail(&b, EBADMSG, "offset 0: wrong magic");
        expect_fail(&b, EBADMSG, "not an svemig stream");
        free(b.p);

        /* CR LF -> LF, as a text-mode copy on a DOS-style system would do. */
        b = copy_bytes(&g);
        p = b.p;
        memmove(p + 4, p + 5, b.len - 5);
        b.len--;
        expect_fail(&b, EBADMSG, "CR LF became LF");
        free(b.p);

        /* LF -> CR LF. */
        b = (struct bytes){malloc(g.len + 1), g.len + 1};
        memcpy(b.p, g.p, 5);
        b.p[5] = '\r';
        memcpy(b.p + 6, g.p + 5, g.len - 5);
        expect_fail(&b, EBADMSG, "LF became CR LF");
        free(b.p);

        b = copy_bytes(&g);
        b.p[0] &= 0x7f;
        expect_fail(&b, EBADMSG, "7-bit");
        free(b.p);

        b = (struct bytes){g.p, 0};
        expect_fail(&b, EBADMSG, "inside the magic");
        free(g.p);
}

static void test_versions(void **state)
{
        struct bytes g = read_golden_file(), b;
        struct svemig_error err = {0};

        b = copy_bytes(&g);
        put_le16(b.p + 8, 2);
        expect_fail(&b, EPROTONOSUPPORT, "stream format v2.0; this svemig reads v1.x only: upgrade svemig");
        put_le16(b.p + 8, 0);
        expect_fail(&b, EPROTONOSUPPORT, "v0.0");
        free(b.p);

        /* A newer minor is read: it may only add what an older reader can pass over. */
        b = copy_bytes(&g);
        {
                uint32_t len = get_le32(b.p + 12);
                put_le16(b.p + 10, 7);
                put_le64(b.p + 16 + len, XXH3_64bits(b.p, 16 + len));
        }
        /* ...but the digest covers the header, so this copy ends in a digest mismatch. */
        expect_fail(&b, EBADMSG, "digest of the stream does not match its trailer");
        {
                struct svemig_stream_reader *r = NULL;
                int fd = memfd_with(&b);
                assert_int_equal(svemig_stream_reader_open(fd, NULL, &r, &err), 0);
                assert_int_equal(svemig_stream_reader_info(r)->minor, 7);
                svemig_stream_reader_free(r);
                close(fd);
        }
        free(b.p);
        free(g.p);
}

static bool is_stream_errno(int k)
{
        return k == -EBADMSG || k == -EPROTO || k == -E2BIG || k == -EPROTONOSUPPORT;
}

/*
 * The sweeps below decode the golden stream thousands of times. Under a
 * sanitizer (make test-asan, make test-tsan) each decode is many times
 * slower, and there they take every 13th position (odd, so that every bit
 * of a byte is still flipped): the plain build's full sweep shows what each
 * damage does to the reader, the sanitizer's what the reader does to memory
 * meanwhile, and the fuzz tier damages streams at random besides.
 */
#ifdef SVEMIG_TEST_SANITIZED
#define SWEEP_STRIDE 13u
#else
#define SWEEP_STRIDE 1u
#endif

static void test_truncated(void **state)
{
        struct bytes g = read_golden_file();

        /* Every cut in the first 3 KiB (preamble, header, first frames), then every 37th byte. */
        for (size_t len = 0; len < g.len; len += (len < 3072 ? 1 : 37) * SWEEP_STRIDE) {
                struct bytes b = {g.p, len};
                struct svemig_error err = {0};
                int k = decode_bytes(&b, 1, &err);

                if (k != -EBADMSG || !strstr(err.msg, "truncated"))
                        fail_msg("cut at %zu of %zu: %d: %s", len, g.len, k, err.msg);
                assert_non_null(strstr(err.msg, "offset "));
        }
        free(g.p);
}

static void test_bitflips(void **state)
{
        struct bytes g = read_golden_file(), b = copy_bytes(&g);
        size_t tried = 0;

        /* One flipped bit anywhere is found: magic, version, lengths, heads, payloads, trailer. */
        for (size_t i = 0; i < g.len; i += (i < 2048 ? 1 : 7) * SWEEP_STRIDE) {
                struct svemig_error err = {0};
                uint8_t bit = (uint8_t)(1u << (i % 8));
                int k;

                b.p[i] ^= bit;
                k = decode_bytes(&b, 1, &err);
                b.p[i] ^= bit;
                if (!is_stream_errno(k))
                        fail_msg("bit %u of byte %zu flipped: %d (%s)", i % 8, i, k, err.msg);
                assert_non_null(strstr(err.msg, "offset "));
                tried++;
        }
        assert_true(tried > 2048 / SWEEP_STRIDE);
        /* And the unflipped copy still reads. */
        {
                struct svemig_error err = {0};
                if (decode_bytes(&b, 1, &err) != 0)
                        fail_msg("%s", err.msg);
        }
        free(b.p);
        free(g.p);
}

/* Rewrites the golden file's header through 'edit' and fixes its checksum. */
static struct bytes with_header(const struct bytes *g, void (*edit)(Svemig__StreamHeader *h),
                                void (*unedit)(Svemig__StreamHeader *h))
{
        uint32_t len = get_le32(g->p + 12);
        Svemig__StreamHeader *h = svemig__stream_header__unpack(NULL, len, g->p + 16);
        size_t rest = g->len - (16 + len + 8), nlen;
        struct bytes b;

        assert_non_null(h);
        edit(h);
        nlen = svemig__stream_header__get_packed_size(h);
        b.len = 16 + nlen + 8 + rest;
        b.p = malloc(b.len);
        memcpy(b.p, g->p, 12);
        put_le32(b.p + 12, (uint32_t)nlen);
        svemig__stream_header__pack(h, b.p + 16);
        put_le64(b.p + 16 + nlen, XXH3_64bits(b.p, 16 + nlen));
        memcpy(b.p + 16 + nlen + 8, g->p + 16 + len + 8, rest);
        if (unedit)
                unedit(h);
        svemig__stream_header__free_unpacked(h, NULL);
        return b;
}

static void edit_vcpus(Svemig__StreamHeader *h)
{
        h->vcpu_count = 1000000000;
}

static Svemig__MemSlot many_slots[600];
static Svemig__MemSlot *many_slot_ptrs[600];
static void edit_slots(Svemig__StreamHeader *h)
{
        for (size_t i = 0; i < ELEMENTSOF(many_slots); i++) {
                svemig__mem_slot__init(&many_slots[i]);
                many_slots[i].id = (uint32_t)i;
                many_slots[i].gpa = i << 20;
                many_slots[i].size = 4096;
                many_slot_ptrs[i] = &many_slots[i];
        }
        h->slots = many_slot_ptrs;
        h->n_slots = ELEMENTSOF(many_slots);
}

static void edit_huge_slot(Svemig__StreamHeader *h)
{
        h->slots[0]->size = 1ull << 50;
}

static void edit_page_size(Svemig__StreamHeader *h)
{
        h->page_size = 3000;
}

static Svemig__FrameKind future_kind;
static Svemig__FrameKind *future_kinds[4];
static Svemig__FrameKind **orig_kinds;
static void edit_kinds(Svemig__StreamHeader *h)
{
        orig_kinds = h->frame_kinds;
        svemig__frame_kind__init(&future_kind);
        future_kind.type = 42;
        future_kind.name = (char *)"SME_STATE";
        future_kind.since_minor = 3;
        future_kind.required = true;
        for (size_t i = 0; i < 3; i++)
                future_kinds[i] = h->frame_kinds[i];
        future_kinds[3] = &future_kind;
        h->frame_kinds = future_kinds;
        h->n_frame_kinds = 4;
}

static void unedit_kinds(Svemig__StreamHeader *h)
{
        h->frame_kinds = orig_kinds;
        h->n_frame_kinds = 3;
}

static size_t orig_vls_len;
static void edit_vls(Svemig__StreamHeader *h)
{
        orig_vls_len = h->guest_vls.len;
        h->guest_vls.len = 12;
}

static void unedit_vls(Svemig__StreamHeader *h)
{
        h->guest_vls.len = orig_vls_len;
}

static void test_header_limits(void **state)
{
        struct bytes g = read_golden_file(), b;

        b = with_header(&g, edit_vcpus, NULL);
        expect_fail(&b, E2BIG, "offset 16: header: 1000000000 vcpus, over the limit of 4096");
        free(b.p);

        b = with_header(&g, edit_huge_slot, NULL);
        expect_fail(&b, E2BIG, "over the limit of");
        free(b.p);

        b = with_header(&g, edit_page_size, NULL);
        expect_fail(&b, EBADMSG, "page size 3000");
        free(b.p);

        b = with_header(&g, edit_vls, unedit_vls);
        expect_fail(&b, EBADMSG, "VL set");
        free(b.p);

        b = with_header(&g, edit_kinds, unedit_kinds);
        expect_fail(&b, EPROTO,
                    "required frames of type 42 (\"SME_STATE\"), introduced in stream format v1.3");
        free(b.p);

        /* A header length over the limit is refused before anything is allocated for it. */
        b = copy_bytes(&g);
        put_le32(b.p + 12, 0xffffffffu);
        expect_fail(&b, E2BIG, "offset 12: a header of 4294967295 bytes");
        free(b.p);

        free(g.p);
}

static void test_many_slots(void **state)
{
        struct bytes g = read_golden_file(), b;
        uint32_t len = get_le32(g.p + 12);
        Svemig__StreamHeader *h = svemig__stream_header__unpack(NULL, len, g.p + 16);
        Svemig__MemSlot **orig = h->slots;
        size_t n_orig = h->n_slots, nlen;

        /* with_header() frees the message, so build this one by hand. */
        edit_slots(h);
        nlen = svemig__stream_header__get_packed_size(h);
        b.len = 16 + nlen + 8;
        b.p = malloc(b.len);
        memcpy(b.p, g.p, 12);
        put_le32(b.p + 12, (uint32_t)nlen);
        svemig__stream_header__pack(h, b.p + 16);
        put_le64(b.p + 16 + nlen, XXH3_64bits(b.p, 16 + nlen));
        expect_fail(&b, E2BIG, "600 memory slots, over the limit of 512");
        h->slots = orig;
        h->n_slots = n_orig;
        svemig__stream_header__free_unpacked(h, NULL);
        free(b.p);
        free(g.p);
}

/* The offset of the first frame of the golden file. */
static size_t first_frame(const struct bytes *g)
{
        return 16 + get_le32(g->p + 12) + 8;
}

static void rewrite_head(uint8_t *head, uint32_t flags, uint32_t stored, uint32_t raw)
{
        put_le32(head + 4, flags);
        put_le32(head + 8, stored);
        put_le32(head + 12, raw);
        put_le32(head + 16, XXH32(head, 16, FRAME_HEAD_SEED));
}

/* The golden v1.1 file with its first MEMORY frame with LZ4 pages rewritten through 'edit'. */
static struct bytes with_page_chunk(const struct bytes *g,
                                    void (*edit)(Svemig__MemChunk *m, uint32_t *flags))
{
        size_t off = first_frame(g), len, rest;
        uint32_t flags, stored;
        Svemig__MemChunk *m;
        struct bytes b;

        for (;;) {
                assert_true(off + FRAME_HEAD_SIZE <= g->len);
                flags = get_le32(g->p + off + 4);
                stored = get_le32(g->p + off + 8);
                assert_int_not_equal(get_le16(g->p + off), SVEMIG_FRAME_TRAILER);
                if (get_le16(g->p + off) == SVEMIG_FRAME_MEMORY && (flags & FRAME_F_PAGE_LZ4))
                        break;
                off += FRAME_HEAD_SIZE + stored + FRAME_TAIL_SIZE;
        }
        m = svemig__mem_chunk__unpack(NULL, stored, g->p + off + FRAME_HEAD_SIZE);
        assert_non_null(m);
        /* The golden chunk at 0x40000000: pages 0, 3, 5 zero; 1, 6 random (raw); 2, 4, 7 LZ4. */
        assert_int_equal(m->gpa, golden_slots[0].gpa);
        assert_int_equal(m->n_lz4_sizes, 3);
        edit(m, &flags);
        len = svemig__mem_chunk__get_packed_size(m);
        rest = g->len - (off + FRAME_HEAD_SIZE + stored + FRAME_TAIL_SIZE);
        b.len = off + FRAME_HEAD_SIZE + len + FRAME_TAIL_SIZE + rest;
        b.p = malloc(b.len);
        assert_non_null(b.p);
        memcpy(b.p, g->p, off + FRAME_HEAD_SIZE);
        svemig__mem_chunk__pack(m, b.p + off + FRAME_HEAD_SIZE);
        rewrite_head(b.p + off, flags, (uint32_t)len, (uint32_t)len);
        put_le64(b.p + off + FRAME_HEAD_SIZE + len, XXH3_64bits(b.p + off + FRAME_HEAD_SIZE, len));
        memcpy(b.p + off + FRAME_HEAD_SIZE + len + FRAME_TAIL_SIZE,
               g->p + off + FRAME_HEAD_SIZE + stored + FRAME_TAIL_SIZE, rest);
        svemig__mem_chunk__free_unpacked(m, NULL);
        return b;
}

static void edit_lz4_on_zero(Svemig__MemChunk *m, uint32_t *flags)
{
        m->lz4_pages.data[0] |= 1u << 0;
}

static void edit_lz4_past_end(Svemig__MemChunk *m, uint32_t *flags)
{
        m->page_count = 7; /* page 7 is an LZ4 page */
}

static void edit_lz4_no_bitmap(Svemig__MemChunk *m, uint32_t *flags)
{
        m->lz4_pages.len = 0;
}

static void edit_lz4_sizes_short(Svemig__MemChunk *m, uint32_t *flags)
{
        m->n_lz4_sizes--;
}

static void edit_lz4_size_zero(Svemig__MemChunk *m, uint32_t *flags)
{
        m->data.len -= m->lz4_sizes[0];
        memmove(m->data.data + 4096, m->data.data + 4096 + m->lz4_sizes[0], m->data.len - 4096);
        m->lz4_sizes[0] = 0;
}

static void edit_lz4_size_page(Svemig__MemChunk *m, uint32_t *flags)
{
        m->lz4_sizes[0] = 4096;
}

static void edit_data_short(Svemig__MemChunk *m, uint32_t *flags)
{
        m->data.len--;
}

/* Page 2's block (after raw page 1) loses its last byte; every length still adds up. */
static void edit_lz4_block_cut(Svemig__MemChunk *m, uint32_t *flags)
{
        uint8_t *end = m->data.data + 4096 + m->lz4_sizes[0];

        memmove(end - 1, end, m->data.len - (size_t)(end - m->data.data));
        m->data.len--;
        m->lz4_sizes[0]--;
}

static void edit_no_flag(Svemig__MemChunk *m, uint32_t *flags)
{
        *flags &= ~FRAME_F_PAGE_LZ4;
}

/* Chunks with LZ4 pages whose bitmap, sizes or blocks disagree are refused, by a check and by a restore
 * alike. */
static void test_bad_lz4_pages(void **state)
{
        static const struct {
                void (*edit)(Svemig__MemChunk *m, uint32_t *flags);
                const char *msg;
        } cases[] = {
                {edit_lz4_on_zero, "marks page 0 LZ4 but it is not a carried non-zero page"},
                {edit_lz4_past_end, "sets bit 7 past its 7 pages"},
                {edit_lz4_no_bitmap, "gives 3 LZ4 page sizes for 0 LZ4 pages"},
                {edit_lz4_sizes_short, "gives 2 LZ4 page sizes for 3 LZ4 pages"},
                {edit_lz4_size_zero, "LZ4 page 0 has 0 bytes; a page's block has 1..4095"},
                {edit_lz4_size_page, "LZ4 page 0 has 4096 bytes"},
                {edit_data_short, "bytes of page data, its bitmaps say 2 raw pages of 4096"},
                {edit_lz4_block_cut, "the LZ4 block of page 0x40002000 does not decompress to a page"},
                {edit_no_flag, "holds LZ4 pages but its frame does not set flag PAGE_LZ4"},
        };
        struct bytes g = read_golden(GOLDEN_V1_1);
        size_t f = first_frame(&g);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct bytes b = with_page_chunk(&g, cases[i].edit);
                uint8_t *dst[GOLDEN_SLOTS];
                struct svemig_mem_map map[GOLDEN_SLOTS];
                struct svemig_error err = {0};
                struct decoded d;
                int fd = memfd_with(&b);

                /* svemigctl verify's way (no memory), then a restore's. */
                expect_fail(&b, EBADMSG, cases[i].msg);
                for (unsigned s = 0; s < GOLDEN_SLOTS; s++) {
                        dst[s] = calloc(1, golden_slots[s].size);
                        map[s] = (struct svemig_mem_map){golden_slots[s].id, golden_slots[s].gpa, dst[s],
                                                         golden_slots[s].size};
                }
                assert_int_equal(decode_fd(fd, 2, map, GOLDEN_SLOTS, &d, &err), -EBADMSG);
                assert_msg(&err, cases[i].msg);
                assert_msg(&err, "offset ");
                decoded_done(&d);
                for (unsigned s = 0; s < GOLDEN_SLOTS; s++)
                        free(dst[s]);
                close(fd);
                free(b.p);
        }

        /* The flag belongs to MEMORY frames only. */
        {
                struct bytes b = copy_bytes(&g);
                size_t off = f;

                while (get_le16(b.p + off) != SVEMIG_FRAME_VCPU)
                        off += FRAME_HEAD_SIZE + get_le32(b.p + off + 8) + FRAME_TAIL_SIZE;
                rewrite_head(b.p + off, get_le32(b.p + off + 4) | FRAME_F_PAGE_LZ4, get_le32(b.p + off + 8),
                             get_le32(b.p + off + 12));
                expect_fail(&b, EBADMSG,
                            "a VCPU frame sets flag PAGE_LZ4, which only MEMORY frames may set");
                free(b.p);
        }
        free(g.p);
}

static void test_frame_limits(void **state)
{
        struct bytes g = read_golden_file(), b;
        size_t f = first_frame(&g);

        assert_int_equal(get_le16(g.p + f), SVEMIG_FRAME_MEMORY);

        b = copy_bytes(&g);
        rewrite_head(b.p + f, FRAME_F_REQUIRED, 0x7fffffffu, 0x7fffffffu);
        expect_fail(&b, E2BIG, "claims 2147483647 bytes");
        free(b.p);

        /* Under the frame cap but over what a chunk of 8 pages can hold. */
        b = copy_bytes(&g);
        rewrite_head(b.p + f, FRAME_F_REQUIRED, 8u << 20, 8u << 20);
        expect_fail(&b, E2BIG, "a MEMORY frame of 8388608 bytes, over its limit");
        free(b.p);

        /* A must-understand flag this reader does not know. */
        b = copy_bytes(&g);
        rewrite_head(b.p + f, get_le32(g.p + f + 4) | (1u << 9), get_le32(g.p + f + 8),
                     get_le32(g.p + f + 12));
        expect_fail(&b, EPROTO, "flags 0x0200 that this reader does not understand");
        free(b.p);

        /* An ignorable one (bits 16..31) is ignored, so only the digest catches the edit. */
        b = copy_bytes(&g);
        rewrite_head(b.p + f, get_le32(g.p + f + 4) | (1u << 20), get_le32(g.p + f + 8),
                     get_le32(g.p + f + 12));
        expect_fail(&b, EBADMSG, "digest");
        free(b.p);
        free(g.p);
}

/*
 * Flag PAGE_CHECKS (a check per page, the frame's over its fields) is for a
 * migration's memory channels only: a stream reader refuses it on a MEMORY
 * frame, and any reader on another frame type.
 */
/* The first frame of type whose flags have every bit of with and none of without. */
static size_t frame_where(const struct bytes *g, uint16_t type, uint32_t with, uint32_t without)
{
        size_t off = first_frame(g);

        for (;;) {
                uint32_t flags = get_le32(g->p + off + 4);

                assert_true(off + FRAME_HEAD_SIZE <= g->len);
                if (get_le16(g->p + off) == type && (flags & with) == with && !(flags & without))
                        return off;
                off += FRAME_HEAD_SIZE + get_le32(g->p + off + 8) + FRAME_TAIL_SIZE;
        }
}

static void expect_page_checks_refused(const struct bytes *g, size_t off, const char *msg)
{
        struct bytes b = copy_bytes(g);

        rewrite_head(b.p + off, get_le32(b.p + off + 4) | FRAME_F_PAGE_CHECKS, get_le32(b.p + off + 8),
                     get_le32(b.p + off + 12));
        expect_fail(&b, EBADMSG, msg);
        free(b.p);
}

static void test_page_checks_refused(void **state)
{
        struct bytes g = read_golden(GOLDEN_V1_1);
        uint8_t *mem[RT_SLOTS];
        struct bytes raw = rt_stream(SVEMIG_COMPRESSION_NONE, mem);

        expect_page_checks_refused(
                &raw, frame_where(&raw, SVEMIG_FRAME_MEMORY, 0, FRAME_F_LZ4 | FRAME_F_PAGE_LZ4),
                "a MEMORY frame with a check per page (flag PAGE_CHECKS), which only a live migration's");
        for (unsigned s = 0; s < RT_SLOTS; s++)
                free(mem[s]);
        free(raw.p);
        expect_page_checks_refused(&g, frame_where(&g, SVEMIG_FRAME_MEMORY, FRAME_F_PAGE_LZ4, 0),
                                   "frame type 2 sets flag PAGE_CHECKS, which only raw MEMORY frames carry");
        expect_page_checks_refused(&g, frame_where(&g, SVEMIG_FRAME_VCPU, 0, 0),
                                   "frame type 1 sets flag PAGE_CHECKS, which only raw MEMORY frames carry");
        free(g.p);
}

/* A stream with extra frames of a future minor version, written by the real writer. */
static struct bytes stream_with_frame(uint16_t type, bool required)
{
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct svemig_stream_info info;
        struct vcpu_state st;
        vqset_t vls = {0};
        int fd = memfd_with(NULL);
        struct bytes b;

        basic_info(&info, NULL, 0, 2);
        assert_int_equal(svemig_stream_writer_open(fd, &info, NULL, &w, &err), 0);
        for (unsigned i = 0; i < 2; i++) {
                assert_int_equal(content_vcpu(i, &vls, i, &st), 0);
                assert_int_equal(svemig_stream_write_vcpu(w, &st, &err), 0);
                vcpu_state_done(&st);
                assert_int_equal(
                        stream_writer_put_frame(w, type, required, 3, (const uint8_t *)"future", 6, &err),
                        0);
        }
        assert_int_equal(svemig_stream_writer_finish(w, &err), 0);
        svemig_stream_writer_free(w);
        b = fd_bytes(fd);
        close(fd);
        return b;
}

static void test_unknown_frames(void **state)
{
        struct bytes b = stream_with_frame(77, false);
        struct svemig_error err = {0};
        struct decoded d;
        int fd = memfd_with(&b);

        /* Optional: passed over, and counted. */
        if (decode_fd(fd, 1, NULL, 0, &d, &err) != 0)
                fail_msg("%s", err.msg);
        assert_int_equal(d.n_vcpus, 2);
        assert_int_equal(d.stats.skipped, 2);
        decoded_done(&d);
        close(fd);
        free(b.p);

        /* Required: refused, naming the type and the version that brought it. */
        b = stream_with_frame(78, true);
        expect_fail(&b, EPROTO, "frame type 78 is required and was introduced in stream format v1.3");
        free(b.p);
}

static void test_no_trailer(void **state)
{
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct svemig_stream_info info;
        int fd = memfd_with(NULL);
        struct bytes b;

        basic_info(&info, NULL, 0, 0);
        assert_int_equal(svemig_stream_writer_open(fd, &info, NULL, &w, &err), 0);
        svemig_stream_writer_free(w); /* no finish */
        b = fd_bytes(fd);
        expect_fail(&b, EBADMSG, "without a trailer");
        free(b.p);
        close(fd);
}

static void test_map_too_small(void **state)
{
        struct bytes g = read_golden_file();
        struct svemig_error err = {0};
        uint8_t *mem = malloc(golden_slots[0].size);
        struct svemig_mem_map map = {golden_slots[0].id, golden_slots[0].gpa, mem, golden_slots[0].size};
        struct decoded d;
        int fd = memfd_with(&g);

        /* Slot 3 has no destination. */
        assert_int_equal(decode_fd(fd, 2, &map, 1, &d, &err), -ERANGE);
        assert_msg(&err, "of slot 3 is outside the destination's memory");
        decoded_done(&d);
        close(fd);
        free(mem);
        free(g.p);
}

static void test_writer_refuses(void **state)
{
        struct svemig_stream_writer *w = NULL;
        struct svemig_error err = {0};
        struct svemig_stream_info info;
        struct vcpu_state st;
        vqset_t vls = {0};
        static uint8_t page[4096 * 2];
        struct svemig_mem_range rg = {0, rt_slots[0].gpa + rt_slots[0].size - 4096, page, 8192, NULL};
        int fd = memfd_with(NULL);

        basic_info(&info, rt_slots, RT_SLOTS, 1);
        info.vcpu_count = 5000;
        assert_int_equal(svemig_stream_writer_open(fd, &info, NULL, &w, &err), -E2BIG);
        assert_msg(&err, "5000 vcpus, over the limit of 4096");
        info.vcpu_count = 1;
        info.guest_max_vq = 3;
        assert_int_equal(svemig_stream_writer_open(fd, &info, NULL, &w, &err), -EINVAL);
        assert_msg(&err, "guest max vq 3");
        info.guest_max_vq = 0;
        assert_int_equal(svemig_stream_writer_open(fd, &info, NULL, &w, &err), 0);

        assert_int_equal(svemig_stream_write_memory(w, &rg, 1, &err), -EINVAL);
        assert_msg(&err, "is outside slot 0");
        rg.slot = 4;
        assert_int_equal(svemig_stream_write_memory(w, &rg, 1, &err), -EINVAL);
        assert_msg(&err, "no such slot");

        assert_int_equal(content_vcpu(1, &vls, 1, &st), 0);
        assert_int_equal(svemig_stream_write_vcpu(w, &st, &err), -EINVAL);
        assert_msg(&err, "announces 1 vcpus");
        st.index = 0;
        st.regs[0].size = 4;
        assert_int_equal(svemig_stream_write_vcpu(w, &st, &err), -EINVAL);
        assert_msg(&err, "has 4 bytes, its ID says 8");
        st.regs[0].size = 8;
        assert_int_equal(svemig_stream_writer_finish(w, &err), -EINVAL);
        assert_msg(&err, "announces 1 vcpus but 0 were written");
        assert_int_equal(svemig_stream_write_vcpu(w, &st, &err), 0);
        assert_int_equal(svemig_stream_write_vcpu(w, &st, &err), -EINVAL);
        assert_msg(&err, "already in the stream");
        assert_int_equal(svemig_stream_writer_finish(w, &err), 0);
        assert_int_equal(svemig_stream_write_vcpu(w, &st, &err), -EINVAL);
        assert_msg(&err, "finished");
        vcpu_state_done(&st);
        svemig_stream_writer_free(w);
        close(fd);
}

/* A reader's errors stick: after one, every call repeats it. */
static void test_sticky(void **state)
{
        struct bytes g = read_golden_file();
        struct svemig_stream_reader *r = NULL;
        struct svemig_error err = {0};
        size_t f = first_frame(&g);
        int fd, k;

        g.p[f + 30] ^= 1; /* inside the first MEMORY payload */
        fd = memfd_with(&g);
        assert_int_equal(svemig_stream_reader_open(fd, NULL, &r, &err), 0);
        assert_int_equal(svemig_stream_next(r, &err), SVEMIG_FRAME_MEMORY);
        k = svemig_stream_read_memory(r, NULL, 0, &err);
        assert_int_equal(k, -EBADMSG);
        assert_msg(&err, "payload checksum mismatch");
        svemig_error_clear(&err);
        assert_int_equal(svemig_stream_next(r, &err), -EBADMSG);
        assert_msg(&err, "payload checksum mismatch");
        svemig_stream_reader_free(r);
        close(fd);
        free(g.p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip_vcpus),
                cmocka_unit_test(test_roundtrip_memory),
                cmocka_unit_test(test_dirty_rounds),
                cmocka_unit_test(test_deterministic),
                cmocka_unit_test(test_pipe),
                cmocka_unit_test(test_page_coding),
                cmocka_unit_test(test_random_pages_raw),
                cmocka_unit_test(test_half_random_page),
                cmocka_unit_test(test_progress),
                cmocka_unit_test(test_golden),
                cmocka_unit_test(test_golden_v1_1),
                cmocka_unit_test(test_golden_v1_2),
                cmocka_unit_test(test_bad_magic),
                cmocka_unit_test(test_versions),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_bitflips),
                cmocka_unit_test(test_header_limits),
                cmocka_unit_test(test_many_slots),
                cmocka_unit_test(test_frame_limits),
                cmocka_unit_test(test_page_checks_refused),
                cmocka_unit_test(test_bad_lz4_pages),
                cmocka_unit_test(test_unknown_frames),
                cmocka_unit_test(test_no_trailer),
                cmocka_unit_test(test_map_too_small),
                cmocka_unit_test(test_writer_refuses),
                cmocka_unit_test(test_sticky),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}

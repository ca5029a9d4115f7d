/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "libvirt-cpu.h"
#include "api.pb-c.h"
#include "macro.h"

static void xml_doc_freep(xmlDoc **d)
{
        if (*d)
                xmlFreeDoc(*d);
}

static void xml_char_freep(xmlChar **s)
{
        if (*s)
                xmlFree(*s);
}

static bool is_element(const xmlNode *n, const char *name)
{
        return n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, (const xmlChar *)name) == 0;
}

static xmlNode *child(xmlNode *parent, const char *name)
{
        for (xmlNode *n = parent ? parent->children : NULL; n; n = n->next)
                if (is_element(n, name))
                        return n;
        return NULL;
}

/* No network, no entities: the XML comes from libvirt, but is read as untrusted. */
static int read_doc(const char *xml, size_t len, xmlDoc **out, xmlNode **domain, struct svemig_error *err)
{
        xmlDoc *doc;
        xmlNode *root;

        if (len > INT32_MAX)
                return svemig_error_set(err, EFBIG, "the domain XML is too large (%zu bytes)", len);
        doc = xmlReadMemory(xml, (int)len, "domain.xml", NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc) {
                const xmlError *e = xmlGetLastError();

                return svemig_error_set(err, EBADMSG, "the domain XML does not parse: %s",
                                        e && e->message ? e->message : "malformed");
        }
        root = xmlDocGetRootElement(doc);
        if (!root || !is_element(root, "domain")) {
                xmlFreeDoc(doc);
                return svemig_error_set(err, EBADMSG, "the XML is not a libvirt domain (no <domain> root)");
        }
        *out = doc;
        *domain = root;
        return 0;
}

/* sveN with N a multiple of 128 up to 2048: *vq = N / 128; 0 for "sve"; -1 for any other name. */
static int sve_feature_vq(const char *name)
{
        unsigned long bits;
        char *end;

        if (strncmp(name, "sve", 3) != 0)
                return -1;
        if (name[3] == '\0')
                return 0;
        if (name[3] < '1' || name[3] > '9')
                return -1;
        bits = strtoul(name + 3, &end, 10);
        if (*end || bits % 128 || bits / 128 > LIBVIRT_CPU_VQ_MAX)
                return -1;
        return (int)(bits / 128);
}

bool libvirt_cpu_model_has_sve(const char *model)
{
        static const char *const sve_models[] = {"max", "host", "a64fx", "neoverse-v1", "neoverse-n2"};

        for (size_t i = 0; i < ELEMENTSOF(sve_models); i++)
                if (strcmp(model, sve_models[i]) == 0)
                        return true;
        return false;
}

static void read_model(xmlNode *cpu, struct libvirt_cpu *out)
{
        _cleanup_(xml_char_freep) xmlChar *mode = xmlGetProp(cpu, (const xmlChar *)"mode");
        _cleanup_(xml_char_freep) xmlChar *model = NULL;
        xmlNode *m = child(cpu, "model");

        snprintf(out->mode, sizeof(out->mode), "%s", mode ? (const char *)mode : "custom");
        model = m ? xmlNodeGetContent(m) : NULL;
        snprintf(out->model, sizeof(out->model), "%s", model ? (const char *)model : "");
}

static int read_features(xmlNode *cpu, struct libvirt_cpu *out, struct svemig_error *err)
{
        bool sve_off = false, lengths = false;

        for (xmlNode *n = cpu->children; n; n = n->next) {
                _cleanup_(xml_char_freep) xmlChar *name = NULL, *policy = NULL;
                bool on, off;
                int vq;

                if (!is_element(n, "feature"))
                        continue;
                name = xmlGetProp(n, (const xmlChar *)"name");
                policy = xmlGetProp(n, (const xmlChar *)"policy");
                if (!name || (vq = sve_feature_vq((const char *)name)) < 0)
                        continue;
                /* libvirt's default policy is require. */
                on = !policy || !xmlStrcmp(policy, (const xmlChar *)"require") ||
                     !xmlStrcmp(policy, (const xmlChar *)"force");
                off = policy && (!xmlStrcmp(policy, (const xmlChar *)"disable") ||
                                 !xmlStrcmp(policy, (const xmlChar *)"forbid"));
                if (vq == 0) {
                        /* sve itself: required is the default; only disabling it matters. */
                        sve_off |= off;
                        continue;
                }
                lengths = true;
                if (on)
                        vqset_add(&out->required, (unsigned)vq);
                else if (off)
                        vqset_add(&out->disabled, (unsigned)vq);
        }
        if (sve_off && !vqset_empty(&out->required))
                return svemig_error_set(err, EINVAL,
                                        "the domain's <cpu> disables sve but requires sve%u; QEMU refuses "
                                        "that: drop one of them",
                                        vq_to_bits(vqset_lowest(&out->required)));
        if (sve_off)
                out->sve = LIBVIRT_SVE_OFF;
        else if (lengths && !vqset_empty(&out->required))
                out->sve = LIBVIRT_SVE_LENGTHS;
        else
                out->sve = LIBVIRT_SVE_DEFAULT; /* disabled lengths alone cap the default */
        return 0;
}

int libvirt_cpu_parse(const char *xml, size_t len, char **name, struct libvirt_cpu *out,
                      struct svemig_error *err)
{
        _cleanup_(xml_doc_freep) xmlDoc *doc = NULL;
        _cleanup_(xml_char_freep) xmlChar *text = NULL;
        xmlNode *domain, *cpu, *n;
        int r;

        *out = (struct libvirt_cpu){0};
        r = read_doc(xml, len, &doc, &domain, err);
        if (r < 0)
                return r;
        n = child(domain, "name");
        text = n ? xmlNodeGetContent(n) : NULL;
        if (!text || !text[0])
                return svemig_error_set(err, EBADMSG, "the domain XML has no <name>");
        if (name && !(*name = strdup((const char *)text)))
                return svemig_error_set(err, ENOMEM, "out of memory");
        cpu = child(domain, "cpu");
        out->has_cpu = cpu != NULL;
        if (!cpu)
                return 0;
        read_model(cpu, out);
        r = read_features(cpu, out, err);
        if (r < 0 && name) {
                free(*name);
                *name = NULL;
        }
        return r;
}

bool libvirt_cpu_on_host(const struct libvirt_cpu *c, const vqset_t *host, vqset_t *set,
                         struct vqset_reason *why)
{
        vqset_t missing, hidden;
        unsigned max_vq;

        *why = (struct vqset_reason){0};
        vqset_clear(set);
        switch (c->sve) {
        case LIBVIRT_SVE_OFF:
                return true;
        case LIBVIRT_SVE_DEFAULT:
                /* A disabled length the host has caps the set below it (QEMU's rule). */
                hidden = vqset_and(host, &c->disabled);
                max_vq = vqset_empty(&hidden) ? VQSET_VQ_MAX : vqset_lowest(&hidden) - 1;
                *set = vqset_upto(host, max_vq);
                return true;
        case LIBVIRT_SVE_LENGTHS:
                break;
        }
        max_vq = vqset_highest(&c->required);
        why->guest_max_vq = max_vq;
        missing = vqset_andnot(&c->required, host);
        *set = vqset_upto(host, max_vq);
        hidden = vqset_and(set, &c->disabled);
        if (!vqset_empty(&missing) &&
            (vqset_empty(&hidden) || vqset_lowest(&missing) < vqset_lowest(&hidden))) {
                why->kind = VQSET_MISSING;
                why->vq = vqset_lowest(&missing);
        } else if (!vqset_empty(&hidden)) {
                why->kind = VQSET_EXTRA;
                why->vq = vqset_lowest(&hidden);
        }
        if (why->kind != VQSET_OK)
                vqset_clear(set);
        return why->kind == VQSET_OK;
}

static vqset_t pinned_disabled(const vqset_t *set)
{
        vqset_t all = vqset_range(LIBVIRT_CPU_VQ_MAX);

        return vqset_andnot(&all, set);
}

bool libvirt_cpu_pinned_to(const struct libvirt_cpu *c, const vqset_t *set)
{
        vqset_t off;

        if (vqset_empty(set))
                return c->sve == LIBVIRT_SVE_OFF;
        off = pinned_disabled(set);
        return c->sve == LIBVIRT_SVE_LENGTHS && vqset_equal(&c->required, set) &&
               vqset_equal(&c->disabled, &off);
}

static int add_feature(xmlNode *cpu, const char *policy, const char *name)
{
        xmlNode *f = xmlNewChild(cpu, NULL, (const xmlChar *)"feature", NULL);

        if (!f || !xmlNewProp(f, (const xmlChar *)"policy", (const xmlChar *)policy) ||
            !xmlNewProp(f, (const xmlChar *)"name", (const xmlChar *)name))
                return -ENOMEM;
        return 0;
}

static int new_cpu(xmlNode *domain, xmlNode **out)
{
        xmlNode *cpu = xmlNewChild(domain, NULL, (const xmlChar *)"cpu", NULL), *model;

        if (!cpu || !xmlNewProp(cpu, (const xmlChar *)"mode", (const xmlChar *)"custom") ||
            !xmlNewProp(cpu, (const xmlChar *)"match", (const xmlChar *)"exact"))
                return -ENOMEM;
        model = xmlNewChild(cpu, NULL, (const xmlChar *)"model", (const xmlChar *)"max");
        if (!model || !xmlNewProp(model, (const xmlChar *)"fallback", (const xmlChar *)"forbid"))
                return -ENOMEM;
        *out = cpu;
        return 0;
}

/* A custom model without SVE cannot carry the lengths: max can, under TCG and KVM alike. */
static int sve_model(xmlNode *cpu)
{
        struct libvirt_cpu c = {0};
        xmlNode *m;

        read_model(cpu, &c);
        if (strcmp(c.mode, "custom") != 0 || libvirt_cpu_model_has_sve(c.model))
                return 0;
        m = child(cpu, "model");
        if (m) {
                xmlNodeSetContent(m, (const xmlChar *)"max");
        } else {
                m = xmlNewChild(cpu, NULL, (const xmlChar *)"model", (const xmlChar *)"max");
                if (!m)
                        return -ENOMEM;
        }
        return xmlSetProp(m, (const xmlChar *)"fallback", (const xmlChar *)"forbid") ? 0 : -ENOMEM;
}

static int write_features(xmlNode *cpu, const vqset_t *set)
{
        char name[16];
        int r;

        /* Every SVE feature goes; the set's own are written after the rest. */
        for (xmlNode *n = cpu->children, *next; n; n = next) {
                _cleanup_(xml_char_freep) xmlChar *fname = NULL;

                next = n->next;
                if (!is_element(n, "feature"))
                        continue;
                fname = xmlGetProp(n, (const xmlChar *)"name");
                if (fname && sve_feature_vq((const char *)fname) >= 0) {
                        xmlUnlinkNode(n);
                        xmlFreeNode(n);
                }
        }
        if (vqset_empty(set))
                return add_feature(cpu, "disable", "sve");
        r = add_feature(cpu, "require", "sve");
        for (unsigned vq = 1; r >= 0 && vq <= LIBVIRT_CPU_VQ_MAX; vq++) {
                snprintf(name, sizeof(name), "sve%u", vq_to_bits(vq));
                r = add_feature(cpu, vqset_contains(set, vq) ? "require" : "disable", name);
        }
        return r;
}

int libvirt_cpu_pin_xml(const char *xml, size_t len, const vqset_t *set, char **out,
                        struct svemig_error *err)
{
        _cleanup_(xml_doc_freep) xmlDoc *doc = NULL;
        xmlChar *text = NULL;
        xmlNode *domain, *cpu;
        int size = 0, r;

        if (vqset_highest(set) > LIBVIRT_CPU_VQ_MAX)
                return svemig_error_set(err, EINVAL, "QEMU's SVE lengths stop at 2048 bits");
        r = read_doc(xml, len, &doc, &domain, err);
        if (r < 0)
                return r;
        cpu = child(domain, "cpu");
        r = cpu ? 0 : new_cpu(domain, &cpu);
        if (r >= 0 && !vqset_empty(set))
                r = sve_model(cpu);
        if (r >= 0)
                r = write_features(cpu, set);
        if (r < 0)
                return svemig_error_set(err, -r, "cannot rewrite the domain's <cpu>: out of memory");
        xmlDocDumpFormatMemory(doc, &text, &size, 1);
        if (!text)
                return svemig_error_set(err, ENOMEM, "out of memory");
        *out = strndup((const char *)text, (size_t)size);
        xmlFree(text);
        return *out ? 0 : svemig_error_set(err, ENOMEM, "out of memory");
}

int libvirt_cpu_format(const struct libvirt_cpu *c, char *buf, size_t len)
{
        char set[256];

        switch (c->sve) {
        case LIBVIRT_SVE_OFF:
                return snprintf(buf, len, "sve off");
        case LIBVIRT_SVE_DEFAULT:
                if (vqset_empty(&c->disabled))
                        return snprintf(buf, len, "the host's lengths (no SVE features)");
                vqset_format(&c->disabled, VQSET_FORMAT_BITS, set, sizeof(set));
                return snprintf(buf, len, "the host's lengths below the first of %s", set);
        case LIBVIRT_SVE_LENGTHS:
                break;
        }
        vqset_format(&c->required, VQSET_FORMAT_BITS, set, sizeof(set));
        return snprintf(buf, len, "%s", set);
}

int libvirt_cpu_reason_format(const struct vqset_reason *why, const char *host, char *buf, size_t len)
{
        switch (why->kind) {
        case VQSET_MISSING:
                return snprintf(buf, len, "%s lacks vq %u (%u-bit)", host, why->vq, vq_to_bits(why->vq));
        case VQSET_EXTRA:
                return snprintf(buf, len,
                                "%s offers vq %u (%u-bit) below the domain's maximum of %u bits and cannot "
                                "hide it",
                                host, why->vq, vq_to_bits(why->vq), vq_to_bits(why->guest_max_vq));
        default:
                return snprintf(buf, len, "%s can present it", host);
        }
}

static const char *const sve_names[] = {
        [LIBVIRT_SVE_DEFAULT] = "default",
        [LIBVIRT_SVE_OFF] = "off",
        [LIBVIRT_SVE_LENGTHS] = "lengths",
};

static size_t fill_bits(const vqset_t *s, uint32_t *out)
{
        size_t n = 0;

        VQSET_FOREACH (vq, s)
                if (vq <= LIBVIRT_CPU_VQ_MAX)
                        out[n++] = vq_to_bits(vq);
        return n;
}

void libvirt_cpu_to_proto(const struct libvirt_cpu *c, Svemig__Api__LibvirtCpu *out, uint32_t *bits)
{
        svemig__api__libvirt_cpu__init(out);
        out->sve = (char *)sve_names[c->sve];
        out->required_bits = bits;
        out->n_required_bits = fill_bits(&c->required, bits);
        out->disabled_bits = bits + LIBVIRT_CPU_VQ_MAX;
        out->n_disabled_bits = fill_bits(&c->disabled, out->disabled_bits);
}

static int bits_to_set(uint32_t *bits, size_t n, vqset_t *out, struct svemig_error *err)
{
        vqset_clear(out);
        for (size_t i = 0; i < n; i++) {
                if (bits[i] == 0 || bits[i] % 128 || bits[i] / 128 > LIBVIRT_CPU_VQ_MAX)
                        return svemig_error_set(
                                err, EINVAL,
                                "%u is not an SVE length QEMU knows (a multiple of 128 up to "
                                "2048)",
                                bits[i]);
                vqset_add(out, bits[i] / 128);
        }
        return 0;
}

int libvirt_cpu_from_proto(const Svemig__Api__LibvirtCpu *in, struct libvirt_cpu *out,
                           struct svemig_error *err)
{
        int r;

        *out = (struct libvirt_cpu){.has_cpu = true};
        if (!in)
                return svemig_error_set(err, EINVAL, "the request names no <cpu> (LibvirtCpu)");
        for (size_t i = 0; i < ELEMENTSOF(sve_names); i++)
                if (strcmp(in->sve, sve_names[i]) == 0)
                        out->sve = (enum libvirt_sve)i;
        if (strcmp(in->sve, sve_names[out->sve]) != 0)
                return svemig_error_set(err, EINVAL, "LibvirtCpu.sve '%s': expected default, off or lengths",
                                        in->sve);
        r = bits_to_set(in->required_bits, in->n_required_bits, &out->required, err);
        if (r >= 0)
                r = bits_to_set(in->disabled_bits, in->n_disabled_bits, &out->disabled, err);
        if (r >= 0 && out->sve == LIBVIRT_SVE_LENGTHS && vqset_empty(&out->required))
                return svemig_error_set(err, EINVAL, "LibvirtCpu names lengths but requires none");
        return r;
}

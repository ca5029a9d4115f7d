/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * S3 (AWS, or any endpoint that checks SigV4 as AWS does, such as Ceph's
 * radosgw), path-style: ENDPOINT/BUCKET/KEY. Requests are signed by
 * curl's CURLOPT_AWS_SIGV4; curl 7.88 signs correctly only what is given
 * to it ready, so we send x-amz-content-sha256 ourselves, write query
 * parameters sorted and percent-encoded, and give a bare one as "uploads=".
 *
 * An upload is a multipart upload: parts of part_size are read from the
 * source into one buffer per worker and go up in parallel, so memory stays
 * at parallel * part_size. The object appears at CompleteMultipartUpload,
 * sent last; any failure or cancel sends AbortMultipartUpload instead.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "store-curl.h"

#define S3_PARTS_MAX 10000u

struct s3_creds {
        char key[256], secret[256], token[2048];
};

struct s3 {
        const struct store_ctx *c;
        char *bucket;
        char *key_esc; /* the key, percent-encoded but for '/' */
        char *object;  /* ENDPOINT/BUCKET/KEY */
        char sigv4[128];
        char userpwd[520];
        struct curl_slist *headers; /* x-amz-content-sha256, the session token */
};

static void s3_done(struct s3 *s)
{
        free(s->bucket);
        free(s->key_esc);
        free(s->object);
        curl_slist_free_all(s->headers);
        explicit_bzero(s->userpwd, sizeof(s->userpwd));
}

static int parse(const char *location, char **bucket, const char **key, struct svemig_error *err)
{
        const char *b = location + 5, *slash = strchr(b, '/');
        size_t n = slash ? (size_t)(slash - b) : strlen(b);

        if (n < 3 || n > 63)
                return svemig_error_set(err, EINVAL, "%s: the bucket name must have 3 to 63 characters",
                                        location);
        for (size_t i = 0; i < n; i++)
                if (!(islower((unsigned char)b[i]) || isdigit((unsigned char)b[i]) || b[i] == '-' ||
                      b[i] == '.'))
                        return svemig_error_set(err, EINVAL,
                                                "%s: a bucket name has lower-case letters, digits, '-' and "
                                                "'.' only",
                                                location);
        if (bucket && !(*bucket = strndup(b, n)))
                return svemig_error_set(err, ENOMEM, "out of memory");
        *key = slash ? slash + 1 : "";
        return 0;
}

static void trim(char *s)
{
        char *e = s + strlen(s);

        while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
        memmove(s, s + strspn(s, " \t"), strlen(s + strspn(s, " \t")) + 1);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(FILE *, fclose);

/* The profile's keys from an AWS shared-credentials file: 1 found, 0 not there, <0 unreadable. */
static int creds_from_file(const char *path, const char *profile, struct s3_creds *cr)
{
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        char line[4096];
        bool in = false;

        if (!f)
                return errno == ENOENT ? 0 : -errno;
        while (fgets(line, sizeof(line), f)) {
                char *eq;

                trim(line);
                if (line[0] == '#' || line[0] == ';' || !line[0])
                        continue;
                if (line[0] == '[') {
                        char *end = strchr(line, ']');
                        const char *name = line + 1;

                        if (end)
                                *end = '\0';
                        if (strncmp(name, "profile ", 8) == 0)
                                name += 8;
                        in = strcmp(name, profile) == 0;
                        continue;
                }
                eq = strchr(line, '=');
                if (!in || !eq)
                        continue;
                *eq = '\0';
                trim(line);
                trim(eq + 1);
                if (strcmp(line, "aws_access_key_id") == 0)
                        snprintf(cr->key, sizeof(cr->key), "%s", eq + 1);
                else if (strcmp(line, "aws_secret_access_key") == 0)
                        snprintf(cr->secret, sizeof(cr->secret), "%s", eq + 1);
                else if (strcmp(line, "aws_session_token") == 0)
                        snprintf(cr->token, sizeof(cr->token), "%s", eq + 1);
        }
        return cr->key[0] && cr->secret[0];
}

/* As the AWS tools look: the environment, then the configured file, then ~/.aws/credentials. */
static int load_creds(const struct store_ctx *c, const char *location, struct s3_creds *cr,
                      struct svemig_error *err)
{
        const char *env_key = getenv("AWS_ACCESS_KEY_ID"), *env_secret = getenv("AWS_SECRET_ACCESS_KEY");
        const char *profile = c->conf.profile ? c->conf.profile : getenv("AWS_PROFILE");
        const char *shared = getenv("AWS_SHARED_CREDENTIALS_FILE"), *home = getenv("HOME");
        char home_file[4096] = "";
        const char *files[2];
        int r;

        memset(cr, 0, sizeof(*cr));
        if (env_key && env_key[0] && env_secret && env_secret[0]) {
                snprintf(cr->key, sizeof(cr->key), "%s", env_key);
                snprintf(cr->secret, sizeof(cr->secret), "%s", env_secret);
                if (getenv("AWS_SESSION_TOKEN"))
                        snprintf(cr->token, sizeof(cr->token), "%s", getenv("AWS_SESSION_TOKEN"));
                return 0;
        }
        if (!profile || !profile[0])
                profile = "default";
        if (!shared && home)
                snprintf(home_file, sizeof(home_file), "%s/.aws/credentials", home);
        files[0] = c->conf.credentials_file;
        files[1] = shared ? shared : home_file[0] ? home_file : NULL;
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                if (!files[i])
                        continue;
                r = creds_from_file(files[i], profile, cr);
                if (r < 0)
                        return svemig_error_set(err, -r, "%s: cannot read the credentials file %s: %s",
                                                location, files[i], strerror(-r));
                if (r > 0)
                        return 0;
                if (i == 0)
                        return svemig_error_set(err, ENOKEY,
                                                "%s: the credentials file %s has no aws_access_key_id and "
                                                "aws_secret_access_key for profile %s",
                                                location, files[i], profile);
        }
        return svemig_error_set(
                err, ENOKEY,
                "%s: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, name "
                "a file in migrate.conf ([store] credentials-file), or write "
                "~/.aws/credentials",
                location);
}

static int s3_open(const struct store_ctx *c, const char *location, struct s3 *s, struct svemig_error *err)
{
        const char *key, *ep = c->conf.s3_endpoint;
        struct s3_creds cr;
        size_t ep_len;
        int r;

        memset(s, 0, sizeof(*s));
        s->c = c;
        if (!ep || !ep[0])
                return svemig_error_set(err, EINVAL,
                                        "%s: no S3 endpoint: set [store] s3-endpoint in migrate.conf",
                                        location);
        r = parse(location, &s->bucket, &key, err);
        if (r < 0)
                return r;
        r = load_creds(c, location, &cr, err);
        if (r < 0)
                return r;
        s->key_esc = store_curl_escape(key, true);
        ep_len = strlen(ep);
        while (ep_len && ep[ep_len - 1] == '/')
                ep_len--;
        if (!s->key_esc || asprintf(&s->object, "%.*s/%s/%s", (int)ep_len, ep, s->bucket, s->key_esc) < 0) {
                s->object = NULL;
                return svemig_error_set(err, ENOMEM, "out of memory");
        }
        snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", c->conf.s3_region);
        snprintf(s->userpwd, sizeof(s->userpwd), "%s:%s", cr.key, cr.secret);
        s->headers = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
        if (cr.token[0]) {
                char h[2100];

                snprintf(h, sizeof(h), "x-amz-security-token: %s", cr.token);
                s->headers = curl_slist_append(s->headers, h);
        }
        explicit_bzero(&cr, sizeof(cr));
        return 0;
}

/* A request on url, signed, with the s3 headers and these extra ones. */
static int s3_do(struct s3 *s, const struct store_ctx *c, struct curl_req *q, const char *extra1,
                 const char *extra2, struct svemig_error *err)
{
        struct curl_slist *h = NULL;
        int r;

        for (struct curl_slist *l = s->headers; l; l = l->next)
                h = curl_slist_append(h, l->data);
        if (extra1)
                h = curl_slist_append(h, extra1);
        if (extra2)
                h = curl_slist_append(h, extra2);
        q->headers = h;
        q->sigv4 = s->sigv4;
        q->userpwd = s->userpwd;
        r = store_curl_do(c, q, err);
        curl_slist_free_all(h);
        q->headers = NULL;
        return r;
}

static int s3_check(const struct store_ctx *c, const char *location, struct svemig_error *err)
{
        const char *key;
        int r;

        r = parse(location, NULL, &key, err);
        if (r < 0)
                return r;
        if (!key[0] || key[strlen(key) - 1] == '/')
                return svemig_error_set(err, EINVAL, "%s: name the object: s3://BUCKET/KEY", location);
        if (!c->conf.s3_endpoint || !c->conf.s3_endpoint[0])
                return svemig_error_set(err, EINVAL,
                                        "%s: no S3 endpoint: set [store] s3-endpoint in migrate.conf",
                                        location);
        return 0;
}

/* --- multipart upload --- */

struct part {
        uint8_t *buf;
        size_t len;
        unsigned number;
        bool busy;
        pthread_t thread;
};

struct upload {
        struct s3 *s;
        char *id_esc;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct part *parts;
        unsigned n_parts;
        char **etags; /* by part number - 1 */
        unsigned n_alloc;
        unsigned n_etags;
        bool quit;
        int failed;
        struct svemig_error err;
};

static int put_part(struct upload *u, struct part *p, char **etag, struct svemig_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct curl_req q = {.method = "PUT", .body = p->buf, .body_len = p->len};
        int r;

        if (asprintf(&url, "%s?partNumber=%u&uploadId=%s", u->s->object, p->number, u->id_esc) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        q.url = url;
        r = s3_do(u->s, u->s->c, &q, "Content-Type: application/octet-stream", NULL, err);
        if (r == 0 && !q.etag[0])
                r = svemig_error_set(err, EPROTO, "PUT %s: the answer had no ETag", url);
        if (r == 0 && !(*etag = strdup(q.etag)))
                r = svemig_error_set(err, ENOMEM, "out of memory");
        store_curl_req_done(&q);
        return r;
}

struct worker_arg {
        struct upload *u;
        struct part *p;
};

static void *part_main(void *arg)
{
        struct worker_arg *wa = arg;
        struct upload *u = wa->u;
        struct part *p = wa->p;

        for (;;) {
                struct svemig_error err = {0};
                char *etag = NULL;
                int r;

                pthread_mutex_lock(&u->lock);
                while (!p->busy && !u->quit)
                        pthread_cond_wait(&u->cond, &u->lock);
                if (!p->busy) {
                        pthread_mutex_unlock(&u->lock);
                        return NULL;
                }
                pthread_mutex_unlock(&u->lock);

                r = u->failed ? -ECANCELED : put_part(u, p, &etag, &err);

                pthread_mutex_lock(&u->lock);
                if (r < 0 && !u->failed) {
                        u->failed = r;
                        u->err = err;
                } else if (r == 0) {
                        u->etags[p->number - 1] = etag;
                }
                p->busy = false;
                pthread_cond_broadcast(&u->cond);
                pthread_mutex_unlock(&u->lock);
        }
}

static int initiate(struct s3 *s, const struct store_ctx *c, char **id, struct svemig_error *err)
{
        _cleanup_free_ char *url = NULL;
        struct curl_req q = {.method = "POST"};
        int r;

        if (asprintf(&url, "%s?uploads=", s->object) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        q.url = url;
        r = s3_do(s, c, &q, "Content-Type: application/octet-stream", NULL, err);
        if (r == 0 && !(*id = store_curl_xml_tag(q.resp, "UploadId", NULL)))
                r = svemig_error_set(err, EPROTO, "POST %s: the answer names no UploadId", url);
        store_curl_req_done(&q);
        return r;
}

static int complete(struct upload *u, struct svemig_error *err)
{
        _cleanup_free_ char *url = NULL, *xml = NULL;
        struct curl_req q = {.method = "POST"};
        size_t len = 0, cap = 64 + (size_t)u->n_etags * 400;
        int r;

        xml = malloc(cap);
        if (!xml || asprintf(&url, "%s?uploadId=%s", u->s->object, u->id_esc) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        len += (size_t)snprintf(xml + len, cap - len, "<CompleteMultipartUpload>");
        for (unsigned i = 0; i < u->n_etags; i++)
                len += (size_t)snprintf(xml + len, cap - len,
                                        "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", i + 1,
                                        u->etags[i]);
        len += (size_t)snprintf(xml + len, cap - len, "</CompleteMultipartUpload>");
        q.url = url;
        q.body = xml;
        q.body_len = len;
        r = s3_do(u->s, u->s->c, &q, "Content-Type: application/xml", NULL, err);
        /* S3 may answer 200 and still fail, in the body. */
        if (r == 0 && q.resp && strstr(q.resp, "<Error>")) {
                _cleanup_free_ char *code = store_curl_xml_tag(q.resp, "Code", NULL);
                _cleanup_free_ char *msg = store_curl_xml_tag(q.resp, "Message", NULL);

                r = svemig_error_set(err, EIO, "POST %s: CompleteMultipartUpload failed: %s%s%s", url,
                                     code ? code : "an error", msg ? ": " : "", msg ? msg : "");
        }
        store_curl_req_done(&q);
        return r;
}

static void abort_upload(struct upload *u)
{
        _cleanup_free_ char *url = NULL;
        struct svemig_error ignored = {0};
        atomic_bool never = false;
        struct store_ctx c = *u->s->c;
        struct curl_req q = {.method = "DELETE"};

        c.cancel = &never; /* it runs because of a cancel, often */
        c.conf.retries = 2;
        if (asprintf(&url, "%s?uploadId=%s", u->s->object, u->id_esc) < 0)
                return;
        q.url = url;
        (void)s3_do(u->s, &c, &q, NULL, NULL, &ignored);
        store_curl_req_done(&q);
}

/*
 * Reads the next part from src into an idle worker's buffer and hands it
 * over. 1: handed, more may follow; 0: handed, the last; 2: the data ended
 * before it, nothing handed.
 */
static int feed_one(struct upload *u, struct store_source *src, unsigned number, struct svemig_error *err)
{
        size_t part_size = u->s->c->conf.part_size, got;
        struct part *p = NULL;
        int r;

        pthread_mutex_lock(&u->lock);
        while (!u->failed) {
                for (unsigned i = 0; i < u->n_parts && !p; i++)
                        if (!u->parts[i].busy)
                                p = &u->parts[i];
                if (p)
                        break;
                pthread_cond_wait(&u->cond, &u->lock);
        }
        pthread_mutex_unlock(&u->lock);
        if (!p)
                return -ECANCELED; /* a worker failed: its reason is in u->err */

        r = store_source_read(src, p->buf, part_size, &got);
        if (r == -ECANCELED)
                return svemig_error_set(err, ECANCELED, "cancelled");
        if (r < 0)
                return svemig_error_set(err, -r, "reading the data: %s", strerror(-r));
        if (got == 0 && number > 1)
                return 2;
        if (number > S3_PARTS_MAX)
                return svemig_error_set(err, EFBIG,
                                        "the object passes %u parts of %zu bytes; raise [store] part-size",
                                        S3_PARTS_MAX, part_size);
        pthread_mutex_lock(&u->lock);
        if (number > u->n_alloc) {
                char **e = realloc(u->etags, number * 2 * sizeof(*e));

                if (!e) {
                        pthread_mutex_unlock(&u->lock);
                        return svemig_error_set(err, ENOMEM, "out of memory");
                }
                memset(e + u->n_alloc, 0, (number * 2 - u->n_alloc) * sizeof(*e));
                u->etags = e;
                u->n_alloc = number * 2;
        }
        p->len = got;
        p->number = number;
        p->busy = true;
        pthread_cond_broadcast(&u->cond);
        pthread_mutex_unlock(&u->lock);
        return got == part_size;
}

static int s3_put(const struct store_ctx *c, const char *location, struct store_source *src,
                  struct svemig_error *err)
{
        struct upload u = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
        struct worker_arg *args = NULL;
        _cleanup_free_ char *id = NULL;
        unsigned started = 0, number = 0;
        struct s3 s;
        int r;

        r = s3_open(c, location, &s, err);
        if (r < 0)
                goto out;
        u.s = &s;
        r = initiate(&s, c, &id, err);
        if (r < 0)
                goto out;
        u.id_esc = store_curl_escape(id, false);
        u.n_parts = c->conf.parallel;
        u.parts = calloc(u.n_parts, sizeof(*u.parts));
        args = calloc(u.n_parts, sizeof(*args));
        if (!u.id_esc || !u.parts || !args) {
                r = svemig_error_set(err, ENOMEM, "out of memory");
                goto abort;
        }
        for (; started < u.n_parts; started++) {
                u.parts[started].buf = malloc(c->conf.part_size);
                args[started] = (struct worker_arg){.u = &u, .p = &u.parts[started]};
                if (!u.parts[started].buf) {
                        r = svemig_error_set(err, ENOMEM, "out of memory for a part of %zu bytes",
                                             c->conf.part_size);
                        break;
                }
                r = -pthread_create(&u.parts[started].thread, NULL, part_main, &args[started]);
                if (r < 0) {
                        svemig_error_set(err, -r, "cannot start an upload worker: %s", strerror(-r));
                        free(u.parts[started].buf);
                        break;
                }
        }
        while (r == 0) {
                r = feed_one(&u, src, ++number, err);
                if (r == 1)
                        r = 0;
                else if (r >= 0) {
                        if (r == 2)
                                number--;
                        r = 0;
                        break;
                }
        }
        pthread_mutex_lock(&u.lock);
        u.quit = true;
        pthread_cond_broadcast(&u.cond);
        pthread_mutex_unlock(&u.lock);
        for (unsigned i = 0; i < started; i++) {
                pthread_join(u.parts[i].thread, NULL);
                free(u.parts[i].buf);
        }
        /* A worker's failure is the reason, unless the caller's cancel came first. */
        if (u.failed && (r == 0 || (r == -ECANCELED && !err->msg[0]))) {
                r = u.failed;
                *err = u.err;
        }
        u.n_etags = number;
        if (r == 0) {
                for (unsigned i = 0; i < u.n_etags; i++)
                        if (!u.etags[i])
                                r = svemig_error_set(err, EIO, "part %u of %s was not uploaded", i + 1,
                                                     location);
        }
        if (r == 0)
                r = complete(&u, err);
abort:
        if (r < 0 && id)
                abort_upload(&u);
out:
        if (u.etags)
                for (unsigned i = 0; i < number && i < u.n_alloc; i++)
                        free(u.etags[i]);
        free(u.etags);
        free(u.parts);
        free(args);
        free(u.id_esc);
        s3_done(&s);
        return r;
}

/* One request on the object at location, without a body to send. */
static int s3_object_request(const struct store_ctx *c, const char *location, struct curl_req *q,
                             struct svemig_error *err)
{
        struct s3 s;
        int r;

        r = s3_open(c, location, &s, err);
        if (r == 0) {
                q->url = s.object;
                r = s3_do(&s, c, q, NULL, NULL, err);
        }
        store_curl_req_done(q);
        s3_done(&s);
        return r;
}

static int s3_get(const struct store_ctx *c, const char *location, uint64_t offset, uint64_t length,
                  struct store_sink *sink, struct svemig_error *err)
{
        struct curl_req q = {
                .method = "GET",
                .sink = sink,
                .range = offset > 0 || length > 0,
                .range_off = offset,
                .range_len = length,
        };

        return s3_object_request(c, location, &q, err);
}

static int s3_remove(const struct store_ctx *c, const char *location, struct svemig_error *err)
{
        struct curl_req q = {.method = "DELETE"};

        return s3_object_request(c, location, &q, err);
}

static void xml_unescape(char *s)
{
        static const struct {
                const char *ent;
                char ch;
        } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        char *w = s;

        for (const char *r = s; *r;) {
                bool done = false;

                for (size_t i = 0; i < ELEMENTSOF(ents) && *r == '&'; i++)
                        if (strncmp(r, ents[i].ent, strlen(ents[i].ent)) == 0) {
                                *w++ = ents[i].ch;
                                r += strlen(ents[i].ent);
                                done = true;
                                break;
                        }
                if (!done)
                        *w++ = *r++;
        }
        *w = '\0';
}

/* One page of ListObjectsV2; *token gets the next page's token, or NULL. */
static int list_page(struct s3 *s, const struct store_ctx *c, const char *prefix_esc, char **token,
                     store_list_fn fn, void *userdata, struct svemig_error *err)
{
        _cleanup_free_ char *url = NULL, *tok_esc = NULL;
        struct curl_req q = {.method = "GET"};
        const char *ep = c->conf.s3_endpoint, *at;
        size_t ep_len = strlen(ep);
        char *contents;
        int r;

        while (ep_len && ep[ep_len - 1] == '/')
                ep_len--;
        if (*token && !(tok_esc = store_curl_escape(*token, false)))
                return svemig_error_set(err, ENOMEM, "out of memory");
        /* Sorted by name, as SigV4 wants them and curl 7.88 does not do. */
        if (asprintf(&url, "%.*s/%s?%s%s%slist-type=2&prefix=%s", (int)ep_len, ep, s->bucket,
                     tok_esc ? "continuation-token=" : "", tok_esc ? tok_esc : "", tok_esc ? "&" : "",
                     prefix_esc) < 0)
                return svemig_error_set(err, ENOMEM, "out of memory");
        free(*token);
        *token = NULL;
        q.url = url;
        r = s3_do(s, c, &q, NULL, NULL, err);
        at = q.resp;
        while (r == 0 && (contents = store_curl_xml_tag(at, "Contents", &at))) {
                _cleanup_free_ char *key = store_curl_xml_tag(contents, "Key", NULL);
                _cleanup_free_ char *size = store_curl_xml_tag(contents, "Size", NULL);
                _cleanup_free_ char *loc = NULL;

                free(contents);
                if (!key)
                        continue;
                xml_unescape(key);
                if (asprintf(&loc, "s3://%s/%s", s->bucket, key) < 0) {
                        loc = NULL;
                        r = svemig_error_set(err, ENOMEM, "out of memory");
                        break;
                }
                r = fn(userdata, loc, size ? strtoull(size, NULL, 10) : 0);
        }
        if (r == 0 && q.resp && strstr(q.resp, "<IsTruncated>true</IsTruncated>"))
                *token = store_curl_xml_tag(q.resp, "NextContinuationToken", NULL);
        store_curl_req_done(&q);
        return r;
}

static int s3_list(const struct store_ctx *c, const char *prefix, store_list_fn fn, void *userdata,
                   struct svemig_error *err)
{
        _cleanup_free_ char *prefix_esc = NULL;
        char *token = NULL;
        const char *key;
        struct s3 s;
        int r;

        r = s3_open(c, prefix, &s, err);
        if (r < 0) {
                s3_done(&s);
                return r;
        }
        (void)parse(prefix, NULL, &key, err);
        prefix_esc = store_curl_escape(key, false);
        if (!prefix_esc)
                r = svemig_error_set(err, ENOMEM, "out of memory");
        do
                r = r < 0 ? r : list_page(&s, c, prefix_esc, &token, fn, userdata, err);
        while (r == 0 && token);
        free(token);
        s3_done(&s);
        return r;
}

static int s3_check_prefix(const struct store_ctx *c, const char *location, struct svemig_error *err)
{
        return s3_check(c, location, err);
}

const struct store_ops store_s3_ops = {
        .scheme = "s3",
        .check = s3_check_prefix,
        .put = s3_put,
        .get = s3_get,
        .remove = s3_remove,
        .list = s3_list,
};

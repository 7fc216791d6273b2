/*
 * Test of the temper C API, driven by targets/capi/tests/c_api.rs (host) and
 * targets/capi/run_c_test_aarch64.sh (aarch64 under qemu).
 *
 * Usage: test_temper PIXEL_MODEL.tmf PLAIN_MODEL.tmf
 *
 * PIXEL_MODEL is the test model of c_api.rs: input "x" [1, 8, 8, 2] accepting raw u8 pixels,
 * outputs "logits" [1, 3] and "pool" [1, 4, 4, 4], metadata labels "cat,dog,bird".
 * PLAIN_MODEL is the same network without pixel normalization.
 *
 * Checks the API's contract (NULL pointers, invalid files, wrong sizes, error messages,
 * sharing a model between threads) and prints lines starting with "OUT " with every output,
 * for the three input kinds, as exact bit patterns; the Rust side compares them with the
 * Rust runtime's outputs. Exit status 0 when every check passed.
 */
#define _POSIX_C_SOURCE 200809L
#include "temper.h"

#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        checks++;                                                                           \
        if (!(cond)) {                                                                      \
            failures++;                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__, \
                    #cond, temper_last_error_message());                                    \
        }                                                                                   \
    } while (0)

/* A call must fail with `status` and a message containing `needle`. */
#define CHECK_ERR(call, status, needle)                                                     \
    do {                                                                                    \
        temper_status st_ = (call);                                                         \
        checks++;                                                                           \
        if (st_ != (status) || strstr(temper_last_error_message(), (needle)) == NULL) {     \
            failures++;                                                                     \
            fprintf(stderr, "%s:%d: %s: got %s \"%s\", expected %s containing \"%s\"\n",    \
                    __FILE__, __LINE__, #call, temper_status_name(st_),                     \
                    temper_last_error_message(), temper_status_name(status), (needle));     \
        }                                                                                   \
    } while (0)

#define CHECK_OK(call) CHECK((call) == TEMPER_OK)

enum { IN_LEN = 8 * 8 * 2, OUT0_LEN = 3, OUT1_LEN = 4 * 4 * 4 };

/* Deterministic inputs; the same formulas are in c_api.rs. The floats are exact (k/64 - 1). */
static void make_inputs(float *f, int8_t *q, uint8_t *p) {
    for (int i = 0; i < IN_LEN; i++) {
        f[i] = (float)((i * 37) % 128) / 64.0f - 1.0f;
        q[i] = (int8_t)(((i * 53) % 256) - 128);
        p[i] = (uint8_t)((i * 29 + 7) % 256);
    }
}

static uint32_t bits(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* One spare byte in front, so that a deliberately misaligned copy fits. */
    unsigned char *buf = malloc((size_t)n + 16);
    if (buf && fread(buf + 8, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Outputs of one run: both outputs, dequantized and int8. */
typedef struct outputs {
    float f0[OUT0_LEN];
    int8_t q0[OUT0_LEN];
    float f1[OUT1_LEN];
    int8_t q1[OUT1_LEN];
} outputs;

typedef enum input_kind { KIND_F32, KIND_I8, KIND_U8 } input_kind;

static const char *kind_name(input_kind k) { return k == KIND_F32 ? "f32" : k == KIND_I8 ? "i8" : "u8"; }

static temper_status run_once(temper_session *s, input_kind kind, outputs *o) {
    float f[IN_LEN];
    int8_t q[IN_LEN];
    uint8_t p[IN_LEN];
    make_inputs(f, q, p);
    temper_status st = kind == KIND_F32 ? temper_set_input_f32(s, 0, f, IN_LEN)
                       : kind == KIND_I8 ? temper_set_input_i8(s, 0, q, IN_LEN)
                                         : temper_set_input_u8(s, 0, p, IN_LEN);
    if (st != TEMPER_OK) return st;
    if ((st = temper_run(s)) != TEMPER_OK) return st;
    if ((st = temper_get_output_f32(s, 0, o->f0, OUT0_LEN)) != TEMPER_OK) return st;
    if ((st = temper_get_output_i8(s, 0, o->q0, OUT0_LEN)) != TEMPER_OK) return st;
    if ((st = temper_get_output_f32(s, 1, o->f1, OUT1_LEN)) != TEMPER_OK) return st;
    return temper_get_output_i8(s, 1, o->q1, OUT1_LEN);
}

static int same_outputs(const outputs *a, const outputs *b) {
    for (int i = 0; i < OUT0_LEN; i++)
        if (bits(a->f0[i]) != bits(b->f0[i]) || a->q0[i] != b->q0[i]) return 0;
    for (int i = 0; i < OUT1_LEN; i++)
        if (bits(a->f1[i]) != bits(b->f1[i]) || a->q1[i] != b->q1[i]) return 0;
    return 1;
}

static void print_floats(const char *tag, const float *v, int n) {
    printf("OUT %s f32", tag);
    for (int i = 0; i < n; i++) printf(" %08" PRIx32, bits(v[i]));
    printf("\n");
}

static void print_i8(const char *tag, const int8_t *v, int n) {
    printf("OUT %s i8", tag);
    for (int i = 0; i < n; i++) printf(" %d", v[i]);
    printf("\n");
}

static void print_info(const char *tag, const temper_tensor_info *t) {
    printf("OUT %s name=%.*s dtype=%" PRIu32 " rank=%" PRIu32 " dims=", tag, (int)t->name_len, t->name, t->dtype,
           t->rank);
    for (uint32_t d = 0; d < TEMPER_MAX_RANK; d++) printf("%s%" PRIu32, d ? "," : "", t->dims[d]);
    printf(" numel=%zu scale=%08" PRIx32 " zp=%" PRId32 " pixels=%" PRIu32 "\n", t->numel, bits(t->scale),
           t->zero_point, t->accepts_u8_pixels);
}

/* The ABI as this header sees it: the layout of temper_tensor_info and, for every status
 * enumerator of the header, the name the library gives its value. */
static void print_abi(void) {
    printf("OUT layout size=%zu name=%zu name_len=%zu dtype=%zu rank=%zu dims=%zu numel=%zu scale=%zu zp=%zu pixels=%zu\n",
           sizeof(temper_tensor_info), offsetof(temper_tensor_info, name), offsetof(temper_tensor_info, name_len),
           offsetof(temper_tensor_info, dtype), offsetof(temper_tensor_info, rank), offsetof(temper_tensor_info, dims),
           offsetof(temper_tensor_info, numel), offsetof(temper_tensor_info, scale),
           offsetof(temper_tensor_info, zero_point), offsetof(temper_tensor_info, accepts_u8_pixels));
    static const temper_status all[] = {
        TEMPER_OK, TEMPER_ERROR_NULL_POINTER, TEMPER_ERROR_INVALID_ARGUMENT, TEMPER_ERROR_IO,
        TEMPER_ERROR_NO_SUCH_KEY, TEMPER_ERROR_MODEL_FORMAT, TEMPER_ERROR_MODEL_VERSION,
        TEMPER_ERROR_MODEL_CHECKSUM, TEMPER_ERROR_MODEL_ALIGNMENT, TEMPER_ERROR_MODEL_BOUNDS,
        TEMPER_ERROR_MODEL_INVALID, TEMPER_ERROR_MODEL_PLAN, TEMPER_ERROR_ARENA_TOO_SMALL,
        TEMPER_ERROR_NO_SUCH_TENSOR, TEMPER_ERROR_WRONG_LENGTH, TEMPER_ERROR_NOT_PIXEL_INPUT,
        TEMPER_ERROR_INPUT_NOT_SET, TEMPER_ERROR_THREADS_UNAVAILABLE, TEMPER_ERROR_NON_FINITE, TEMPER_ERROR_OUT_OF_MEMORY, TEMPER_ERROR_PANIC,
        TEMPER_ERROR_BUSY, TEMPER_ERROR_INVALID_HANDLE};
    printf("OUT status");
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) printf(" %s=%d", temper_status_name(all[i]), (int)all[i]);
    printf("\n");
    printf("OUT sizeof(temper_status)=%zu\n", sizeof(temper_status));
}

/* ---------------------------------------------------------------- threads */

typedef struct worker {
    const temper_model *model;
    const outputs *expected;
    int mismatches;
    temper_status status;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    size_t arena_len = 0;
    w->status = temper_model_arena_size(w->model, &arena_len);
    if (w->status != TEMPER_OK) return NULL;
    void *arena = malloc(arena_len);
    temper_session *s = NULL;
    w->status = temper_session_create(w->model, arena, arena_len, &s);
    for (int i = 0; i < 200 && w->status == TEMPER_OK; i++) {
        outputs o;
        w->status = run_once(s, (input_kind)(i % 3), &o);
        if (i % 3 == KIND_U8 && !same_outputs(&o, w->expected)) w->mismatches++;
    }
    temper_session_free(s);
    free(arena);
    return NULL;
}

/* Threads sharing ONE session on purpose (the contract says one at a time): every call either
 * completes alone or returns TEMPER_ERROR_BUSY; all set the same input, so any complete
 * sequence gives the reference outputs. */
typedef struct hammer {
    temper_session *s;
    const outputs *expected;
    int ok, busy, wrong, other;
} hammer;

static void *hammer_session(void *arg) {
    hammer *h = arg;
    for (int i = 0; i < 20000 && h->other == 0; i++) {
        outputs o;
        temper_status st = run_once(h->s, KIND_U8, &o);
        if (st == TEMPER_OK) {
            h->ok++;
            if (!same_outputs(&o, h->expected)) h->wrong++;
        } else if (st == TEMPER_ERROR_BUSY) {
            h->busy++;
        } else {
            h->other++;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- checks */

static void check_handles(const temper_model *shared, const outputs *ref_u8, const unsigned char *bytes, size_t len) {
    temper_model *m = NULL;
    size_t arena_len = 0, n = 0;
    outputs o;
    CHECK_OK(temper_model_load_memory(bytes, len, &m));
    CHECK_OK(temper_model_arena_size(m, &arena_len));
    void *arena = malloc(arena_len);
    temper_session *s = NULL;
    CHECK_OK(temper_session_create(m, arena, arena_len, &s));
    /* A model with a session is not freed; the session keeps working. */
    CHECK_ERR(temper_model_free(m), TEMPER_ERROR_BUSY, "the model is in use");
    CHECK_OK(run_once(s, KIND_U8, &o));
    CHECK(same_outputs(&o, ref_u8));
    CHECK_OK(temper_session_free(s));
    /* Double free and use after free are detected. */
    CHECK_ERR(temper_session_free(s), TEMPER_ERROR_INVALID_HANDLE, "invalid session handle: already freed");
    CHECK_ERR(temper_run(s), TEMPER_ERROR_INVALID_HANDLE, "invalid session handle");
    CHECK(strcmp(temper_session_kernels(s), "") == 0);
    CHECK_OK(temper_model_free(m));
    CHECK_ERR(temper_model_free(m), TEMPER_ERROR_INVALID_HANDLE, "invalid model handle: already freed");
    CHECK_ERR(temper_model_num_inputs(m, &n), TEMPER_ERROR_INVALID_HANDLE, "invalid model handle");
    CHECK_ERR(temper_session_create(m, arena, arena_len, &s), TEMPER_ERROR_INVALID_HANDLE, "invalid model handle");

    /* Four threads on one session: BUSY, never a wrong output. */
    CHECK_OK(temper_session_create(shared, arena, arena_len, &s));
    enum { HAMMERS = 4 };
    pthread_t tid[HAMMERS];
    hammer h[HAMMERS];
    int ok = 0, busy = 0;
    for (int i = 0; i < HAMMERS; i++) {
        h[i] = (hammer){s, ref_u8, 0, 0, 0, 0};
        CHECK(pthread_create(&tid[i], NULL, hammer_session, &h[i]) == 0);
    }
    for (int i = 0; i < HAMMERS; i++) {
        CHECK(pthread_join(tid[i], NULL) == 0);
        CHECK(h[i].wrong == 0);
        CHECK(h[i].other == 0);
        ok += h[i].ok;
        busy += h[i].busy;
    }
    printf("one session, %d threads: %d sequences complete, %d refused with TEMPER_ERROR_BUSY\n", HAMMERS, ok, busy);
    CHECK(ok > 0 && busy > 0);
    CHECK_OK(temper_session_free(s));
    free(arena);
}


static void check_null_handling(void) {
    temper_model *m = (temper_model *)0x1; /* must stay untouched on error */
    size_t n = 0;
    temper_tensor_info info;
    CHECK_ERR(temper_model_load_memory(NULL, 10, &m), TEMPER_ERROR_NULL_POINTER, "data is NULL");
    CHECK(m == (temper_model *)0x1);
    CHECK_ERR(temper_model_load_memory_nocopy(NULL, 10, &m), TEMPER_ERROR_NULL_POINTER, "data is NULL");
    CHECK_ERR(temper_model_load_path(NULL, &m), TEMPER_ERROR_NULL_POINTER, "path is NULL");
    CHECK_ERR(temper_model_num_inputs(NULL, &n), TEMPER_ERROR_NULL_POINTER, "model is NULL");
    CHECK_ERR(temper_model_num_outputs(NULL, &n), TEMPER_ERROR_NULL_POINTER, "model is NULL");
    CHECK_ERR(temper_model_input_info(NULL, 0, &info), TEMPER_ERROR_NULL_POINTER, "model is NULL");
    CHECK_ERR(temper_model_output_info(NULL, 0, &info), TEMPER_ERROR_NULL_POINTER, "model is NULL");
    CHECK_ERR(temper_model_arena_size(NULL, &n), TEMPER_ERROR_NULL_POINTER, "model is NULL");
    CHECK_ERR(temper_session_create(NULL, &n, sizeof n, NULL), TEMPER_ERROR_NULL_POINTER, "model is NULL");
    CHECK_ERR(temper_set_input_f32(NULL, 0, NULL, 0), TEMPER_ERROR_NULL_POINTER, "session is NULL");
    CHECK_ERR(temper_set_input_i8(NULL, 0, NULL, 0), TEMPER_ERROR_NULL_POINTER, "session is NULL");
    CHECK_ERR(temper_set_input_u8(NULL, 0, NULL, 0), TEMPER_ERROR_NULL_POINTER, "session is NULL");
    CHECK_ERR(temper_run(NULL), TEMPER_ERROR_NULL_POINTER, "session is NULL");
    CHECK_ERR(temper_session_set_threads(NULL, 2), TEMPER_ERROR_NULL_POINTER, "session is NULL");
    CHECK_ERR(temper_get_output_f32(NULL, 0, NULL, 0), TEMPER_ERROR_NULL_POINTER, "session is NULL");
    CHECK_ERR(temper_get_output_i8(NULL, 0, NULL, 0), TEMPER_ERROR_NULL_POINTER, "session is NULL");
    CHECK(strcmp(temper_session_kernels(NULL), "") == 0);
    CHECK_OK(temper_model_free(NULL));
    CHECK_OK(temper_session_free(NULL));
    CHECK(strcmp(temper_status_name(TEMPER_ERROR_WRONG_LENGTH), "TEMPER_ERROR_WRONG_LENGTH") == 0);
    CHECK(strcmp(temper_status_name((temper_status)12345), "unknown") == 0);
}

static void check_bad_files(const unsigned char *good, size_t len) {
    temper_model *m = NULL;
    unsigned char *bad = malloc(len + 64);
    unsigned char *aligned = bad + (64 - ((uintptr_t)bad % 64)) % 64; /* 64-aligned within bad */
    memset(bad, 0, len + 64);
    CHECK_ERR(temper_model_load_memory(bad, len, &m), TEMPER_ERROR_MODEL_FORMAT, "bad magic: not a temper model file at file byte 0");
    CHECK_ERR(temper_model_load_memory(good, 10, &m), TEMPER_ERROR_MODEL_FORMAT, "file shorter than the header");
    CHECK_ERR(temper_model_load_memory(good, len - 1, &m), TEMPER_ERROR_MODEL_FORMAT, "file length differs from the header");
    memcpy(aligned, good, len);
    aligned[len - 1] ^= 0x40; /* corrupt the last payload byte */
    CHECK_ERR(temper_model_load_memory(aligned, len, &m), TEMPER_ERROR_MODEL_CHECKSUM, "payload checksum mismatch");
    memcpy(aligned, good, len);
    aligned[8] = 2; /* major version 2 (header CRC is checked after the version) */
    CHECK_ERR(temper_model_load_memory(aligned, len, &m), TEMPER_ERROR_MODEL_VERSION, "unsupported major version at file byte 8");
    CHECK(m == NULL);
    CHECK_ERR(temper_model_load_path("/nonexistent/dir/model.tmf", &m), TEMPER_ERROR_IO, "/nonexistent/dir/model.tmf");
    free(bad);
}

static void check_queries(const temper_model *m, int pixel_model) {
    size_t n = 0;
    temper_tensor_info info;
    CHECK_OK(temper_model_num_inputs(m, &n));
    CHECK(n == 1);
    CHECK_OK(temper_model_num_outputs(m, &n));
    CHECK(n == 2);
    CHECK_OK(temper_model_input_info(m, 0, &info));
    CHECK(info.rank == 4 && info.dims[0] == 1 && info.dims[1] == 8 && info.dims[2] == 8 && info.dims[3] == 2);
    CHECK(info.dims[4] == 0 && info.numel == IN_LEN && info.dtype == TEMPER_DTYPE_I8);
    CHECK(info.name_len == 1 && info.name[0] == 'x');
    CHECK(info.accepts_u8_pixels == (uint32_t)pixel_model);
    if (pixel_model) print_info("input0", &info);
    CHECK_ERR(temper_model_input_info(m, 1, &info), TEMPER_ERROR_NO_SUCH_TENSOR, "no graph input/output with index 1");
    CHECK_OK(temper_model_output_info(m, 0, &info));
    CHECK(info.rank == 2 && info.numel == OUT0_LEN && info.accepts_u8_pixels == 0);
    if (pixel_model) print_info("output0", &info);
    CHECK_OK(temper_model_output_info(m, 1, &info));
    CHECK(info.rank == 4 && info.numel == OUT1_LEN);
    if (pixel_model) print_info("output1", &info);
    CHECK_ERR(temper_model_output_info(m, 2, &info), TEMPER_ERROR_NO_SUCH_TENSOR, "index 2");
    CHECK_ERR(temper_model_input_info(m, 0, NULL), TEMPER_ERROR_NULL_POINTER, "out_info is NULL");
    const char *value = NULL;
    size_t value_len = 0;
    CHECK_OK(temper_model_metadata(m, "labels", &value, &value_len));
    CHECK(value_len == 12 && memcmp(value, "cat,dog,bird", 12) == 0);
    CHECK_ERR(temper_model_metadata(m, "no-such-key", &value, &value_len), TEMPER_ERROR_NO_SUCH_KEY, "no metadata entry");
    CHECK_ERR(temper_model_metadata(m, NULL, &value, &value_len), TEMPER_ERROR_NULL_POINTER, "key is NULL");
}

static void check_session_errors(const temper_model *m, int pixel_model) {
    size_t arena_len = 0;
    CHECK_OK(temper_model_arena_size(m, &arena_len));
    CHECK(arena_len > 0);
    unsigned char *arena = malloc(arena_len + 1);
    temper_session *s = NULL;
    char expect[128];
    snprintf(expect, sizeof expect, "arena too small: the model needs %zu bytes, %zu given", arena_len, arena_len - 1);
    CHECK_ERR(temper_session_create(m, arena, arena_len - 1, &s), TEMPER_ERROR_ARENA_TOO_SMALL, expect);
    CHECK_ERR(temper_session_create(m, NULL, arena_len, &s), TEMPER_ERROR_NULL_POINTER, "arena is NULL");
    CHECK(s == NULL);
    /* A misaligned arena works (any alignment is allowed). */
    CHECK_OK(temper_session_create(m, arena + 1, arena_len, &s));
    CHECK(strlen(temper_session_kernels(s)) > 0);
    float f[IN_LEN + 1];
    int8_t q[IN_LEN];
    uint8_t p[IN_LEN];
    make_inputs(f, q, p);
    CHECK_ERR(temper_run(s), TEMPER_ERROR_INPUT_NOT_SET, "graph input 0 was not set before run()");
    CHECK_ERR(temper_set_input_f32(s, 0, f, IN_LEN - 1), TEMPER_ERROR_WRONG_LENGTH,
              "wrong input size: 127 elements given, the tensor has 128");
    CHECK_ERR(temper_set_input_i8(s, 1, q, IN_LEN), TEMPER_ERROR_NO_SUCH_TENSOR, "no graph input/output with index 1");
    CHECK_ERR(temper_set_input_i8(s, 0, NULL, IN_LEN), TEMPER_ERROR_NULL_POINTER, "data is NULL");
    CHECK_ERR(temper_set_input_f32(s, 0, (const float *)((const char *)f + 1), IN_LEN), TEMPER_ERROR_INVALID_ARGUMENT,
              "not aligned");
    if (!pixel_model)
        CHECK_ERR(temper_set_input_u8(s, 0, p, IN_LEN), TEMPER_ERROR_NOT_PIXEL_INPUT,
                  "graph input 0 takes no raw u8 pixels");
    CHECK_OK(temper_set_input_i8(s, 0, q, IN_LEN));
    CHECK_OK(temper_run(s));
    float out[OUT0_LEN + 1];
    int8_t outq[OUT0_LEN];
    CHECK_ERR(temper_get_output_f32(s, 0, out, OUT0_LEN + 1), TEMPER_ERROR_WRONG_LENGTH, "4 elements given, the tensor has 3");
    CHECK_ERR(temper_get_output_i8(s, 2, outq, OUT0_LEN), TEMPER_ERROR_NO_SUCH_TENSOR, "index 2");
    CHECK_ERR(temper_get_output_i8(s, 0, NULL, OUT0_LEN), TEMPER_ERROR_NULL_POINTER, "out is NULL");
    CHECK_OK(temper_get_output_i8(s, 0, outq, OUT0_LEN));
    temper_session_free(s);
    free(arena);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PIXEL_MODEL.tmf PLAIN_MODEL.tmf\n", argv[0]);
        return 2;
    }
    CHECK(temper_abi_version() == TEMPER_ABI_VERSION);
    CHECK(strlen(temper_version()) >= 5);
    CHECK(strcmp(temper_last_error_message(), "") == 0);
    printf("temper %s\n", temper_version());
    print_abi();
    check_null_handling();

    size_t len = 0;
    unsigned char *file = read_file(argv[1], &len);
    CHECK(file != NULL);
    if (!file) return 1;
    const unsigned char *bytes = file + 8; /* 8-aligned (malloc gives >= 16) */
    check_bad_files(bytes, len);

    /* The same model three ways: mapped file, copy from a misaligned buffer, borrowed. */
    temper_model *mapped = NULL, *copied = NULL, *borrowed = NULL;
    CHECK_OK(temper_model_load_path(argv[1], &mapped));
    memmove(file + 1, file + 8, len); /* misaligned copy source */
    CHECK_OK(temper_model_load_memory(file + 1, len, &copied));
    CHECK_ERR(temper_model_load_memory_nocopy(file + 1, len, &borrowed), TEMPER_ERROR_MODEL_ALIGNMENT,
              "8-byte aligned");
    memmove(file + 8, file + 1, len);
    CHECK_OK(temper_model_load_memory_nocopy(file + 8, len, &borrowed));
    if (!mapped || !copied || !borrowed) return 1;

    check_queries(mapped, 1);
    check_session_errors(mapped, 1);

    size_t arena_len = 0;
    CHECK_OK(temper_model_arena_size(mapped, &arena_len));
    void *arena = malloc(arena_len);
    temper_session *s = NULL;
    CHECK_OK(temper_session_create(mapped, arena, arena_len, &s));
    printf("kernels %s\n", temper_session_kernels(s));
    outputs ref_u8;
    memset(&ref_u8, 0, sizeof ref_u8);
    for (int k = KIND_F32; k <= KIND_U8; k++) {
        outputs o, o2;
        CHECK_OK(run_once(s, (input_kind)k, &o));
        char tag[32];
        snprintf(tag, sizeof tag, "%s out0", kind_name((input_kind)k));
        print_floats(tag, o.f0, OUT0_LEN);
        print_i8(tag, o.q0, OUT0_LEN);
        snprintf(tag, sizeof tag, "%s out1", kind_name((input_kind)k));
        print_floats(tag, o.f1, OUT1_LEN);
        print_i8(tag, o.q1, OUT1_LEN);
        /* Same results from the copied and the borrowed model. */
        temper_session *s2 = NULL;
        void *arena2 = malloc(arena_len);
        CHECK_OK(temper_session_create(k == KIND_I8 ? copied : borrowed, arena2, arena_len, &s2));
        CHECK_OK(run_once(s2, (input_kind)k, &o2));
        CHECK(same_outputs(&o, &o2));
        /* the same with intra-op worker threads, then back to one thread */
        CHECK_OK(temper_session_set_threads(s2, 3));
        CHECK_OK(run_once(s2, (input_kind)k, &o2));
        CHECK(same_outputs(&o, &o2));
        CHECK_OK(temper_session_set_threads(s2, 1));
        CHECK_OK(run_once(s2, (input_kind)k, &o2));
        CHECK(same_outputs(&o, &o2));
        temper_session_free(s2);
        free(arena2);
        if (k == KIND_U8) ref_u8 = o;
    }
    temper_session_free(s);
    free(arena);

    /* One model shared by four threads, each with its own session and arena. */
    enum { THREADS = 4 };
    pthread_t tid[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){mapped, &ref_u8, 0, TEMPER_OK};
        CHECK(pthread_create(&tid[i], NULL, work, &w[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_join(tid[i], NULL) == 0);
        CHECK(w[i].status == TEMPER_OK);
        CHECK(w[i].mismatches == 0);
    }

    check_handles(mapped, &ref_u8, file + 8, len);

    CHECK_OK(temper_model_free(mapped));
    CHECK_OK(temper_model_free(copied));
    CHECK_OK(temper_model_free(borrowed));
    free(file);

    /* The plain model: no pixel input. */
    temper_model *plain = NULL;
    CHECK_OK(temper_model_load_path(argv[2], &plain));
    if (plain) {
        check_queries(plain, 0);
        check_session_errors(plain, 0);
        temper_model_free(plain);
    }

    if (failures) {
        fprintf(stderr, "FAIL: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("PASS %d checks\n", checks);
    return 0;
}

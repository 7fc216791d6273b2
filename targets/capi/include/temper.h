/*
 * temper.h -- C API of the temper INT8 inference runtime (C99).
 *
 * Link with the static library (libtemper_capi.a, plus -lpthread -ldl -lm on Linux) or the
 * shared library (libtemper_capi.so). Built by `cargo build -p temper-capi [--release]
 * [--target TRIPLE]`; the artifacts land in target/[TRIPLE/]{debug,release}/.
 *
 * Typical use (error checks shortened; see examples/classify.c):
 *
 *     temper_model *model;
 *     temper_model_load_path("model.tmf", &model);      // validates the whole file
 *     size_t arena_len;
 *     temper_model_arena_size(model, &arena_len);
 *     void *arena = malloc(arena_len);                   // or a static buffer
 *     temper_session *s;
 *     temper_session_create(model, arena, arena_len, &s);
 *     temper_set_input_u8(s, 0, pixels, n_pixels);       // or _f32 / _i8
 *     temper_run(s);                                     // no allocation, no I/O
 *     temper_get_output_f32(s, 0, logits, n_classes);
 *     temper_session_free(s); free(arena); temper_model_free(model);
 *
 * Conventions
 * -----------
 * - Every function that can fail returns a temper_status: TEMPER_OK (0) on success, an error
 *   code otherwise. On error, out-parameters are left unchanged and
 *   temper_last_error_message() describes what went wrong and where (for invalid model files:
 *   the problem and its location in the file, e.g. "invalid model: bad magic: not a temper
 *   model file at file byte 0").
 * - A NULL pointer where a pointer is required gives TEMPER_ERROR_NULL_POINTER; nothing is
 *   dereferenced. The free functions accept NULL and do nothing.
 * - No function lets a Rust panic cross into C: an internal error (a bug in temper) is caught
 *   and reported as TEMPER_ERROR_PANIC; a session that reported it is unusable afterwards
 *   (every further call on it returns TEMPER_ERROR_PANIC); free it.
 * - Element counts are counts of elements, not bytes. 4-D tensors are NHWC.
 *
 * Ownership
 * ---------
 * - A temper_model owns its copy of the model bytes (temper_model_load_memory), its file
 *   private copy of a file (temper_model_load_path: replacing or truncating the file later
 *   cannot affect it), or borrows the caller's bytes
 *   (temper_model_load_memory_nocopy). Free it with temper_model_free after every session
 *   created from it has been freed (before that, temper_model_free returns TEMPER_ERROR_BUSY
 *   and frees nothing).
 * - A temper_session borrows its model and the caller's arena: both must stay valid, and the
 *   arena must not be read or written by anyone else, until temper_session_free. The library
 *   never allocates, frees or resizes the arena. Inference (set_input, run, get_output) performs
 *   no heap allocation; temper_session_create allocates one small fixed-size object.
 * - Strings returned by the library are NUL-terminated and owned by it (see each function for
 *   how long they stay valid). Tensor names and metadata values point into the model and are
 *   NOT NUL-terminated: use the accompanying length.
 *
 * Thread safety
 * -------------
 * - A temper_model is immutable after loading and may be shared by any number of threads and
 *   sessions at the same time (all functions taking `const temper_model *` are thread-safe).
 * - A temper_session is used by one thread at a time (it may move between threads, e.g.
 *   be created on one and used on another, with the usual synchronization of the hand-over).
 *   A call on a session that another thread is in returns TEMPER_ERROR_BUSY and touches
 *   nothing (one atomic compare-and-swap per call, no lock, no allocation): it never corrupts
 *   the other thread's outputs. Each call is exclusive, not a sequence of calls: two threads
 *   interleaving set_input / run / get_output on one session still see each other's inputs.
 *   Run sessions in parallel by giving each thread its own session and arena.
 * - temper_last_error_message() is per thread.
 *
 * Handles
 * -------
 * - temper_model * and temper_session * are handles, not addresses: a slot in a fixed table
 *   (1024 models and 1024 sessions live at a time; more gives TEMPER_ERROR_OUT_OF_MEMORY) and a
 *   generation. Never dereference them. A freed handle is detected by its generation: using or
 *   freeing it again returns TEMPER_ERROR_INVALID_HANDLE (temper_session_kernels returns "").
 * - What remains undefined: a value that was never returned by the library (other than NULL)
 *   may name a live object; a stale handle whose slot was reused 2^32 times (2^22 on 32-bit
 *   targets) names the new object; the arena and the bytes of a _nocopy model are the caller's
 *   memory and are not checked.
 */
#ifndef TEMPER_H
#define TEMPER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Version of this header's ABI; compare with temper_abi_version() at run time. */
#define TEMPER_ABI_VERSION 2

/** Maximum tensor rank. */
#define TEMPER_MAX_RANK 8

/** A loaded and validated model (opaque). Immutable; shareable between threads. */
typedef struct temper_model temper_model;

/** An inference context: a model, a caller-given arena and a kernel path (opaque). */
typedef struct temper_session temper_session;

/** Result of a call. Model-file errors are 10..19, inference errors 20..29. */
typedef enum temper_status {
    /** Success. */
    TEMPER_OK = 0,
    /** A required pointer argument is NULL. */
    TEMPER_ERROR_NULL_POINTER = 1,
    /** An argument is invalid (misaligned data pointer, length above PTRDIFF_MAX, ...). */
    TEMPER_ERROR_INVALID_ARGUMENT = 2,
    /** The model file cannot be opened, read or mapped. */
    TEMPER_ERROR_IO = 3,
    /** No metadata entry with this key. */
    TEMPER_ERROR_NO_SUCH_KEY = 4,
    /** Model file: not a temper model, or truncated. */
    TEMPER_ERROR_MODEL_FORMAT = 10,
    /** Model file: a format version or flag this library does not support. */
    TEMPER_ERROR_MODEL_VERSION = 11,
    /** Model file: a checksum does not match (corrupted file). */
    TEMPER_ERROR_MODEL_CHECKSUM = 12,
    /** Model bytes not 8-byte aligned (temper_model_load_memory_nocopy), or a section of the
     *  file misaligned. */
    TEMPER_ERROR_MODEL_ALIGNMENT = 13,
    /** Model file: an offset, length or count is out of bounds or overflows. */
    TEMPER_ERROR_MODEL_BOUNDS = 14,
    /** Model file: a code, shape, parameter or quantization value is invalid. */
    TEMPER_ERROR_MODEL_INVALID = 15,
    /** Model file: the memory plan is inconsistent. */
    TEMPER_ERROR_MODEL_PLAN = 16,
    /** The arena is smaller than temper_model_arena_size(). */
    TEMPER_ERROR_ARENA_TOO_SMALL = 20,
    /** No graph input/output with this index. */
    TEMPER_ERROR_NO_SUCH_TENSOR = 21,
    /** The element count given differs from the tensor's. */
    TEMPER_ERROR_WRONG_LENGTH = 22,
    /** The input takes no raw u8 pixels (the model has no pixel normalization for it). */
    TEMPER_ERROR_NOT_PIXEL_INPUT = 23,
    /** A graph input was not set before temper_run. */
    TEMPER_ERROR_INPUT_NOT_SET = 24,
    /** The worker threads asked for by temper_session_set_threads could not be started. */
    TEMPER_ERROR_THREADS_UNAVAILABLE = 25,
    /** An f32 input holds NaN or infinity (nothing was set). */
    TEMPER_ERROR_NON_FINITE = 26,
    /** Memory for the model copy or the session object could not be allocated. */
    TEMPER_ERROR_OUT_OF_MEMORY = 30,
    /** Internal error (a bug in temper); the session involved is unusable. */
    TEMPER_ERROR_PANIC = 31,
    /** The session is in use by another thread, or the object to free is in use (a model with
     *  sessions, a session another thread is in a call on); nothing was done. */
    TEMPER_ERROR_BUSY = 32,
    /** A handle already freed (double free, use after free) or never created. */
    TEMPER_ERROR_INVALID_HANDLE = 33
} temper_status;

/** Element types (the codes of the .tmf format). Graph inputs and outputs are always int8. */
typedef enum temper_dtype {
    TEMPER_DTYPE_I8 = 1,
    TEMPER_DTYPE_I32 = 2,
    TEMPER_DTYPE_F32 = 3,
    TEMPER_DTYPE_U8 = 4
} temper_dtype;

/**
 * Description of a graph input or output. Real value = scale * (q - zero_point).
 */
typedef struct temper_tensor_info {
    /** Tensor name, name_len bytes, NOT NUL-terminated; valid while the model lives. */
    const char *name;
    /** Length of name in bytes. */
    size_t name_len;
    /** Element type (a temper_dtype; TEMPER_DTYPE_I8 for graph inputs and outputs). */
    uint32_t dtype;
    /** Number of dimensions, 1..=TEMPER_MAX_RANK. */
    uint32_t rank;
    /** Dimensions; entries at and above rank are 0. 4-D tensors are NHWC. */
    uint32_t dims[TEMPER_MAX_RANK];
    /** Number of elements (product of the dimensions). */
    size_t numel;
    /** Quantization scale (> 0). */
    float scale;
    /** Quantization zero point (-128..=127). */
    int32_t zero_point;
    /** Inputs: 1 if temper_set_input_u8 accepts raw pixels for it, else 0. Outputs: 0. */
    uint32_t accepts_u8_pixels;
} temper_tensor_info;

/* ---------------------------------------------------------------- library */

/** Library version ("MAJOR.MINOR.PATCH"), a static NUL-terminated string. Thread-safe. */
const char *temper_version(void);

/** ABI version of the library; equal to TEMPER_ABI_VERSION when header and library match. */
uint32_t temper_abi_version(void);

/** Name of a status code (e.g. "TEMPER_ERROR_WRONG_LENGTH"), a static string; "unknown" for
 *  values outside the enum. Thread-safe. */
const char *temper_status_name(temper_status status);

/**
 * Message of the most recent failed call on the calling thread (what went wrong and where),
 * NUL-terminated, at most 1023 bytes. Empty before the first failure. Successful calls leave
 * it unchanged. The pointer is to thread-local storage owned by the library: it stays valid
 * for the life of the thread, and its content until the next failing call on this thread.
 * Never NULL.
 */
const char *temper_last_error_message(void);

/* ---------------------------------------------------------------- models */

/**
 * Load and validate a model from memory. The bytes are copied into a 64-byte aligned buffer
 * owned by the model, so `data` may be freed as soon as this returns and needs no alignment.
 * On success *out_model receives the model (free with temper_model_free).
 * Errors: NULL_POINTER, OUT_OF_MEMORY, MODEL_* (the file is invalid).
 */
temper_status temper_model_load_memory(const uint8_t *data, size_t len, temper_model **out_model);

/**
 * Load and validate a model from memory WITHOUT copying (e.g. a model in flash or in a buffer
 * the application manages). `data` must be 8-byte aligned (64 recommended) -- otherwise
 * TEMPER_ERROR_MODEL_ALIGNMENT -- and the `len` bytes must stay valid and unmodified until
 * temper_model_free. Otherwise as temper_model_load_memory.
 */
temper_status temper_model_load_memory_nocopy(const uint8_t *data, size_t len, temper_model **out_model);

/**
 * Map a model file into memory (read-only, not copied) and validate it. `path` is a
 * NUL-terminated file name (bytes on POSIX; UTF-8 elsewhere). Replace model files with an atomic
 * rename, never in place: a file truncated while mapped makes accesses fault (SIGBUS).
 * Errors: NULL_POINTER, INVALID_ARGUMENT (path not UTF-8 on non-POSIX systems), IO, MODEL_*.
 * The error message names the file.
 */
temper_status temper_model_load_path(const char *path, temper_model **out_model);

/** Free a model (NULL: no-op, TEMPER_OK). Errors: BUSY (sessions of it exist, or another thread
 *  is in a call on it: nothing freed), INVALID_HANDLE (already freed). */
temper_status temper_model_free(temper_model *model);

/** Number of graph inputs (>= 1). Errors: NULL_POINTER. */
temper_status temper_model_num_inputs(const temper_model *model, size_t *out_count);

/** Number of graph outputs (>= 1). Errors: NULL_POINTER. */
temper_status temper_model_num_outputs(const temper_model *model, size_t *out_count);

/** Describe graph input `index`. Errors: NULL_POINTER, NO_SUCH_TENSOR. */
temper_status temper_model_input_info(const temper_model *model, size_t index, temper_tensor_info *out_info);

/** Describe graph output `index`. Errors: NULL_POINTER, NO_SUCH_TENSOR. */
temper_status temper_model_output_info(const temper_model *model, size_t index, temper_tensor_info *out_info);

/** Bytes of arena a session of this model needs. Errors: NULL_POINTER. */
temper_status temper_model_arena_size(const temper_model *model, size_t *out_bytes);

/**
 * Value of metadata entry `key` (NUL-terminated), e.g. "labels" (comma-separated class names).
 * *out_value points into the model (valid while it lives), *out_len bytes, NOT NUL-terminated.
 * Errors: NULL_POINTER, NO_SUCH_KEY.
 */
temper_status temper_model_metadata(const temper_model *model, const char *key, const char **out_value, size_t *out_len);

/* ---------------------------------------------------------------- sessions */

/**
 * Create a session running `model` in the caller's `arena` of `arena_len` bytes (at least
 * temper_model_arena_size; any alignment works, 64 is best for speed). The arena is zeroed
 * here, then used exclusively by the session until temper_session_free; the model and the arena
 * must outlive the session. The fastest kernel path the CPU supports is chosen here (the
 * environment variable TEMPER_KERNELS=scalar|avx2|avxvnni|avx512vnni|neon|dotprod|i8mm caps it;
 * it is read here, so do not setenv() concurrently).
 * Errors: NULL_POINTER, INVALID_ARGUMENT (arena_len > PTRDIFF_MAX), ARENA_TOO_SMALL,
 * OUT_OF_MEMORY.
 */
temper_status temper_session_create(const temper_model *model, void *arena, size_t arena_len, temper_session **out_session);

/** Free a session (NULL: no-op, TEMPER_OK) and release its model. The arena is the caller's
 *  again afterwards. Errors: BUSY (another thread is in a call on it: nothing freed),
 *  INVALID_HANDLE (already freed). */
temper_status temper_session_free(temper_session *session);

/** Name of the kernel path the session uses ("scalar", "avx2", "neon", "dotprod", ...), a static
 *  string; "" for NULL, a freed handle or a session another thread is in a call on. */
const char *temper_session_kernels(const temper_session *session);

/**
 * Spread large layers of every later temper_run over `threads` threads in all: the caller's
 * and `threads - 1` workers started here (and stopped by temper_session_free or the next call);
 * 0 or 1: the caller's thread only (the default). Outputs are bit-identical for every count;
 * layers too small to gain from it stay on one thread. Idle workers sleep.
 * Errors: NULL_POINTER, THREADS_UNAVAILABLE (the session then runs on one thread), PANIC.
 */
temper_status temper_session_set_threads(temper_session *session, size_t threads);

/**
 * Set graph input `index` from `count` real values (NHWC for 4-D inputs), quantized with the
 * input's scale and zero point. `data` must be aligned for float. NaN or infinity anywhere is
 * rejected with NON_FINITE and the input is left as it was.
 * Errors: NULL_POINTER, INVALID_ARGUMENT, NO_SUCH_TENSOR, WRONG_LENGTH, NON_FINITE, PANIC.
 */
temper_status temper_set_input_f32(temper_session *session, size_t index, const float *data, size_t count);

/** Set graph input `index` from `count` already-quantized int8 values.
 *  Errors: NULL_POINTER, NO_SUCH_TENSOR, WRONG_LENGTH, PANIC. */
temper_status temper_set_input_i8(temper_session *session, size_t index, const int8_t *data, size_t count);

/**
 * Set graph input `index` from `count` raw u8 pixels (NHWC, interleaved channels), applying the
 * normalization stored in the model ((pixel * pixel_scale - mean[c]) / std[c], then
 * quantization). See temper_tensor_info.accepts_u8_pixels.
 * Errors: NULL_POINTER, NO_SUCH_TENSOR, NOT_PIXEL_INPUT, WRONG_LENGTH, PANIC.
 */
temper_status temper_set_input_u8(temper_session *session, size_t index, const uint8_t *pixels, size_t count);

/** Run the model on the inputs set (each input must have been set at least once).
 *  No heap allocation. Errors: NULL_POINTER, INPUT_NOT_SET, PANIC. */
temper_status temper_run(temper_session *session);

/** Copy output `index`, dequantized, into `out` (`count` must equal the output's numel; `out`
 *  aligned for float). Valid after temper_run. Errors: NULL_POINTER, INVALID_ARGUMENT,
 *  NO_SUCH_TENSOR, WRONG_LENGTH, PANIC. */
temper_status temper_get_output_f32(const temper_session *session, size_t index, float *out, size_t count);

/** Copy output `index` as int8 values into `out` (`count` must equal the output's numel).
 *  Valid after temper_run. Errors: NULL_POINTER, NO_SUCH_TENSOR, WRONG_LENGTH, PANIC. */
temper_status temper_get_output_i8(const temper_session *session, size_t index, int8_t *out, size_t count);

#ifdef __cplusplus
}
#endif

#endif /* TEMPER_H */

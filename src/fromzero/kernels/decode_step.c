/* One decoding step of a GPT-2-style model in a single call from Python.

   At batch 1 a step of GPT-2 small is 49 matrix-vector products (gemv.c) and about 150 small
   operations between them: LayerNorms, the attention over the cache, GELU, residual additions. In
   eager PyTorch each of those small operations costs microseconds of dispatch, together about a
   third of the step once the products are fast. Here they are plain loops over a few thousand
   floats, run between the products without going back to Python.

   It computes exactly what fromzero.models.GPT computes for one new token per row (every row writing the
   same cache column; left-padded rows skip their padding), layer by layer:

       x = x + c_proj(attention(c_attn(ln_1(x))))      keys and values appended to the cache
       x = x + mlp_proj(activation(c_fc(ln_2(x))))
       logits = lm_head(ln_f(x))

   Any of these Linear layers may carry a LoRA adapter's low-rank update, added as LoRALinear adds it.

   The products are the same calls to fromzero_gemv as the model's GemvLinear layers make, so they
   give identical numbers; the small operations round like torch's up to a few float ulps. */

#include <math.h>

#include "activations.c"
#include "gemv.c"

typedef struct Linear Linear;
struct Linear {
    int kind; /* WEIGHT_F32, WEIGHT_BF16 or WEIGHT_I8 */
    const void *weight; /* (out, in) */
    const float *scale; /* (out) or NULL */
    const float *bias;  /* (out) or NULL */
    int64_t out, in;
    const Linear *lora_a, *lora_b; /* a low-rank update beside the layer (a LoRA adapter): (r, in), (out, r) */
    float lora_scale;              /* y += lora_scale * lora_b(lora_a(x)); lora_a NULL: none */
};

typedef struct {
    const float *weight, *bias; /* bias may be NULL */
    float eps;
} Norm;

typedef struct {
    Norm ln_1;
    Linear c_attn, attn_proj;
    Norm ln_2;
    Linear c_fc, mlp_proj;
} Layer;

typedef struct {
    int64_t n_layer, n_embd, n_head, n_inner;
    int activation;
    const Layer *layers;
    Norm ln_f;
    Linear lm_head;
} Model;

void fromzero_activate(float *h, int64_t n, int kind) { activate_into(kind, h, h, NULL, n); } /* for the tests */

static void layer_norm(const Norm *norm, const float *x, float *y, int64_t rows, int64_t n) {
    for (int64_t b = 0; b < rows; b++, x += n, y += n) {
        float mean = 0.0f, var = 0.0f;
        #pragma omp simd reduction(+:mean)
        for (int64_t i = 0; i < n; i++) mean += x[i];
        mean /= (float)n;
        #pragma omp simd reduction(+:var)
        for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
        float inv = 1.0f / sqrtf(var / (float)n + norm->eps);
        #pragma omp simd
        for (int64_t i = 0; i < n; i++)
            y[i] = (x[i] - mean) * inv * norm->weight[i] + (norm->bias ? norm->bias[i] : 0.0f);
    }
}

/* spare: room for rows * (lora_a->out + out) floats, the adapter's intermediate and its update */
static int linear(const Linear *l, const float *x, float *y, int64_t rows, float *spare, int threads) {
    int failed = fromzero_gemv(l->kind, l->weight, l->scale, x, l->bias, y, l->out, l->in, rows, threads);
    if (failed || !l->lora_a) return failed;
    const Linear *a = l->lora_a, *b = l->lora_b;
    float *low = spare, *update = spare + rows * a->out;
    failed |= fromzero_gemv(a->kind, a->weight, a->scale, x, NULL, low, a->out, a->in, rows, threads);
    failed |= fromzero_gemv(b->kind, b->weight, b->scale, low, NULL, update, b->out, b->in, rows, threads);
    for (int64_t i = 0; i < rows * l->out; i++) y[i] += update[i] * l->lora_scale;
    return failed;
}

/* Each (row, head) in its own thread: append this step's key and value at column `pos`, then softmax over
   the scores of columns starts[b]..pos (a left-padded row's padding comes before starts[b]; NULL: 0) and
   the weighted sum of their values. */
static void attend(const Model *m, const float *qkv, float *key_cache, float *value_cache, int64_t max_len,
                   int64_t pos, const int64_t *starts, int64_t rows, float *scores, float *out, int threads) {
    int64_t n_embd = m->n_embd, heads = m->n_head, dim = n_embd / heads;
    float scale = 1.0f / sqrtf((float)dim);
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t bh = 0; bh < rows * heads; bh++) {
        int64_t b = bh / heads, h = bh % heads;
        const float *q = qkv + b * 3 * n_embd + h * dim;
        float *keys = key_cache + bh * max_len * dim, *values = value_cache + bh * max_len * dim;
        memcpy(keys + pos * dim, q + n_embd, (size_t)dim * sizeof *keys);
        memcpy(values + pos * dim, q + 2 * n_embd, (size_t)dim * sizeof *values);
        int64_t first = starts ? starts[b] : 0;
        float *s = scores + bh * max_len, top = -INFINITY, total = 0.0f;
        for (int64_t j = first; j <= pos; j++) {
            s[j] = dot_f32(keys + j * dim, q, dim) * scale;
            top = s[j] > top ? s[j] : top;
        }
        #pragma omp simd reduction(+:total)
        for (int64_t j = first; j <= pos; j++) {
            s[j] = exp_vec(s[j] - top);
            total += s[j];
        }
        float *y = out + b * n_embd + h * dim;
        for (int64_t d = 0; d < dim; d++) y[d] = 0.0f;
        for (int64_t j = first; j <= pos; j++) {
            float w = s[j] / total;
            const float *v = values + j * dim;
            #pragma omp simd
            for (int64_t d = 0; d < dim; d++) y[d] += w * v[d];
        }
    }
}

static void add(float *x, const float *y, int64_t n) {
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* x: (rows, n_embd), the new tokens' embeddings (token + position), overwritten by the residual
   stream. keys[l], values[l]: layer l's cache, (rows, n_head, max_len, head_dim), columns 0..pos-1
   filled; this step writes column pos. starts: (rows) the first column each row attends to (after its
   left padding), or NULL for 0. scratch: as fromzero.kernels.decode_step lays it out (the adapters'
   room last).
   logits: (rows, lm_head.out). Returns 0, or gemv's error code. */
int fromzero_decode_step(const Model *m, float *x, int64_t rows, float *const *keys, float *const *values,
                         int64_t max_len, int64_t pos, const int64_t *starts, float *scratch, float *logits,
                         int threads) {
    int64_t n_embd = m->n_embd;
    float *normed = scratch, *qkv = normed + rows * n_embd, *attended = qkv + rows * 3 * n_embd;
    float *branch = attended + rows * n_embd, *hidden = branch + rows * n_embd;
    float *scores = hidden + rows * m->n_inner, *spare = scores + rows * m->n_head * max_len;
    int failed = 0;
    for (int64_t l = 0; l < m->n_layer && !failed; l++) {
        const Layer *layer = m->layers + l;
        layer_norm(&layer->ln_1, x, normed, rows, n_embd);
        failed |= linear(&layer->c_attn, normed, qkv, rows, spare, threads);
        attend(m, qkv, keys[l], values[l], max_len, pos, starts, rows, scores, attended, threads);
        failed |= linear(&layer->attn_proj, attended, branch, rows, spare, threads);
        add(x, branch, rows * n_embd);
        layer_norm(&layer->ln_2, x, normed, rows, n_embd);
        failed |= linear(&layer->c_fc, normed, hidden, rows, spare, threads);
        fromzero_activate(hidden, rows * m->n_inner, m->activation);
        failed |= linear(&layer->mlp_proj, hidden, branch, rows, spare, threads);
        add(x, branch, rows * n_embd);
    }
    if (failed) return failed;
    layer_norm(&m->ln_f, x, normed, rows, n_embd);
    return linear(&m->lm_head, normed, logits, rows, spare, threads);
}

## Reductions with a fixed summation order (results do not depend on threads or local sizes).
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, vw)}

// part[row] = sum of src[row * length ... row * length + length - 1]; used for the bias gradient per (b, map).
__kernel void ${name}_rows(${c.params(signatures["_rows"])})
{
    const dcl_idx row = get_global_id(0);
    if (row >= rows) return;
    __global const dcl_t* s = src + row * length;
    dcl_accv acc = (dcl_accv)(0);
    dcl_idx i = 0;
    for (; i + ${vw} <= length; i += ${vw})
        acc += DCL_LOADV(s + i);
    dcl_acc total = ${" + ".join(f"acc.s{'0123456789abcdef'[l]}" for l in range(vw))};
    for (; i < length; ++i)
        total += DCL_LOAD(s + i);
    part[row] = total;
}

// sum[e] = (first ? 0 : sum[e]) + src[e], in the accumulator type: a batch split's chunk gradients summed in order.
__kernel void ${name}_accumulate(${c.params(signatures["_accumulate"])})
{
    const dcl_idx e = get_global_id(0);
    if (e >= count) return;
    sum[e] = (first ? (dcl_acc)0 : sum[e]) + (dcl_acc)DCL_LOAD(src + e);
}

// dst[e] = scale * sum_c part[c * count + e] + momentum * dst[e]  (dst is not read when momentum is 0,
// so NaN garbage in a fresh gradient buffer cannot leak in).
__kernel void ${name}_finalize(${c.params(signatures["_finalize"])})
{
    const dcl_idx e = get_global_id(0);
    if (e >= count) return;
    dcl_acc total = 0;
    for (int c = 0; c < n_parts; ++c)
        total += part[c * count + e];
    dcl_acc value = scale * total;
    if (momentum != 0)
        value += momentum * (dcl_acc)DCL_LOAD(dst + e);
    DCL_STORE(value, dst + e);
}

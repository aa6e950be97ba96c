## Reductions with a fixed summation order (results do not depend on threads or local sizes); part of the shared
## program (shared.mako), whose prelude declares the types.
<%namespace name="c" file="common.mako"/>\

## The sum of a row of `length` elements from s: 16 lanes (four of the prelude's 4-lane vectors, four chains of
## additions in flight: two left the sum bound by the adds' latency, at half the memory's pace), then the vectors
## pairwise, the lanes in order, and the tail.
<%def name="row_sum(total)">
        dcl_accv a0 = (dcl_accv)(0), a1 = (dcl_accv)(0), a2 = (dcl_accv)(0), a3 = (dcl_accv)(0);
        dcl_idx i = 0;
        for (; i + 16 <= length; i += 16) {
            a0 += DCL_LOADV(s + i);
            a1 += DCL_LOADV(s + i + 4);
            a2 += DCL_LOADV(s + i + 8);
            a3 += DCL_LOADV(s + i + 12);
        }
        const dcl_accv sum4 = (a0 + a1) + (a2 + a3);
        dcl_acc ${total} = sum4.s0 + sum4.s1 + sum4.s2 + sum4.s3;
        for (; i < length; ++i)
            ${total} += DCL_LOAD(s + i);
</%def>

## dst[e] = scale * total + momentum * dst[e], the last write of a gradient; dst is not read when momentum is 0, so
## NaN garbage in a fresh gradient buffer cannot leak in.
<%def name="blend(e)">
    dcl_acc value = scale * total;
    if (momentum != 0)
        value += momentum * (dcl_acc)DCL_LOAD(dst + ${e});
    DCL_STORE(value, dst + ${e});
</%def>

// dst[m] = scale * sum over b < n, positions < length of src[b][m] + momentum * dst[m]: the bias gradient of a
// whole batch in one kernel (CPUs: a work-item a map, its rows summed in order).
__kernel void ${name}_bias(${c.params(signatures["_bias"])})
{
    const dcl_idx m = get_global_id(0);
    if (m >= maps) return;
    dcl_acc total = 0;
    for (dcl_idx b = 0; b < n; ++b) {
        __global const dcl_t* s = src + (b * maps + m) * length;
${row_sum("row")}
        total += row;
    }
${blend("m")}
}

// part[r] = the sum of row r of src, `length` elements: the bias gradient's first stage elsewhere than on CPUs (a
// work-item a (batch item, map) row; the finalize sums them over the batch).
__kernel void ${name}_rows(${c.params(signatures["_rows"])})
{
    const dcl_idx r = get_global_id(0);
    if (r >= rows) return;
    __global const dcl_t* s = src + r * length;
${row_sum("total")}
    part[r] = total;
}

// sum[e] = (first ? 0 : sum[e]) + src[e], in the accumulator type: a batch split's chunk gradients summed in order.
__kernel void ${name}_accumulate(${c.params(signatures["_accumulate"])})
{
    const dcl_idx e = get_global_id(0);
    if (e >= count) return;
    sum[e] = (first ? (dcl_acc)0 : sum[e]) + (dcl_acc)DCL_LOAD(src + e);
}

// dst[e] = scale * sum_c part[c * count + e] + momentum * dst[e].
__kernel void ${name}_finalize(${c.params(signatures["_finalize"])})
{
    const dcl_idx e = get_global_id(0);
    if (e >= count) return;
    dcl_acc total = 0;
    for (int c = 0; c < n_parts; ++c)
        total += part[c * count + e];
${blend("e")}
}

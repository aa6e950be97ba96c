## How wide the vector registers are that the device's compiler targets, from the target macros that
## clang-based OpenCL compilers predefine: float lanes + 1 (0: the compiler names no target this probe knows),
## read back as the kernel's required work-group size, so the probe is built but never launched.
#if defined(__AVX512F__)
#define DCL_FLOAT_LANES 16
#elif defined(__AVX__)
#define DCL_FLOAT_LANES 8
#elif defined(__SSE2__) || defined(__ARM_NEON) || defined(__ARM_NEON__)
#define DCL_FLOAT_LANES 4
#else
#define DCL_FLOAT_LANES 0
#endif
__kernel __attribute__((reqd_work_group_size(DCL_FLOAT_LANES + 1, 1, 1))) void ${name}(void)
{
}

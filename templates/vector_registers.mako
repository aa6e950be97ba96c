## How wide the vector registers are that the device's compiler targets, in bits, from the target macros that
## clang-based OpenCL compilers predefine (0: the compiler names no target this probe knows).
__kernel void ${name}(__global int* bits)
{
#if defined(__AVX512F__)
    bits[0] = 512;
#elif defined(__AVX__)
    bits[0] = 256;
#elif defined(__SSE2__) || defined(__ARM_NEON) || defined(__ARM_NEON__)
    bits[0] = 128;
#else
    bits[0] = 0;
#endif
}

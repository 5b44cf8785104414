// FSS_ATTR_CPU_PATHS: the instruction set the CPU kernels were compiled for (reported by _C.build_info()).
#pragma once

// Which instructions the float32 loops were compiled for (setup.py adds -mavx2 -mfma when the build
// machine has them; FSS_ATTR_CPU_FLAGS overrides).
#if defined(__AVX512F__)
#define FSS_ATTR_CPU_PATHS "avx512f"
#elif defined(__AVX2__) && defined(__FMA__)
#define FSS_ATTR_CPU_PATHS "avx2+fma"
#elif defined(__AVX2__)
#define FSS_ATTR_CPU_PATHS "avx2"
#else
#define FSS_ATTR_CPU_PATHS "baseline (no AVX2)"
#endif

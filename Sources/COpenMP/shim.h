// The libgomp entry points that GCC emits for `#pragma omp parallel`, declared by hand so that the
// engine's own kernels run on the same OpenMP thread pool as oneDNN (Debian's libdnnl uses libgomp).
// One pool on two cores: no spinning workers of a second pool stealing a core after every oneDNN call.
#ifndef UNCLIP_COPENMP_SHIM_H
#define UNCLIP_COPENMP_SHIM_H
#if defined(__linux__)
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
int omp_get_max_threads(void);
void omp_set_num_threads(int n);
#endif
#endif

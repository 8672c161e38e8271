/* Reference timing of MPI_Allreduce, two ways in one run, for the peer check in
 * tests/comm.rs:
 *   loop:    nccl-tests' own timing (src/common.cu, default blocking mode): warm up,
 *            barrier, ITERS operations back to back, one clock around the loop,
 *            divided by ITERS, averaged over ranks;
 *   barrier: a barrier before each operation, each one timed, the slowest rank's
 *            time per operation, the median over operations (what `flopcal comm`
 *            reports as time_s).
 * Bus bandwidth as nccl-tests: algbw x 2(n-1)/n, in 1e9 bytes/s.
 *
 * Buffers: with `huge`, 2 MiB-aligned and madvise(MADV_HUGEPAGE), as flopcal's
 * allocator (mimalloc) backs large buffers with transparent huge pages; without it,
 * plain malloc (4 KiB pages here). Over Open MPI's shared-memory single copy (CMA)
 * on the loaded 2-core VM, huge pages were faster at 64 MiB in 5 of 6 interleaved
 * pairs (1.1-1.5x; one pair 0.7x), and flopcal's ranks held their 128 MiB of
 * buffers as AnonHugePages while this program's malloc'd ones held none: that,
 * not the statistic, is what made flopcal read ~1.3x this reference; the check
 * compares on the same kind of memory.
 *
 * usage: mpirun -np N allreduce_ref BYTES ITERS [huge]
 * prints: loop_time_s=T loop_busbw_gb_s=B median_time_s=T median_busbw_gb_s=B */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static float *buffer(long bytes, int huge) {
  void *p = NULL;
  if (!huge) return malloc(bytes);
  if (posix_memalign(&p, 2L << 20, bytes) != 0) return NULL;
  madvise(p, bytes, MADV_HUGEPAGE);
  return p;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, n;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "huge") != 0)) {
    if (rank == 0) fprintf(stderr, "usage: allreduce_ref BYTES ITERS [huge]\n");
    MPI_Finalize();
    return 2;
  }
  long bytes = atol(argv[1]);
  int iters = atoi(argv[2]);
  int huge = argc == 4;
  long count = bytes / (long)sizeof(float);
  float *send = buffer(count * sizeof(float), huge);
  float *recv = buffer(count * sizeof(float), huge);
  double *mine = malloc(iters * sizeof(double));
  double *slowest = malloc(iters * sizeof(double));
  if (!send || !recv || !mine || !slowest || iters < 1) {
    fprintf(stderr, "allreduce_ref: cannot allocate\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  for (long i = 0; i < count; i++) send[i] = (float)((rank * 7 + i) % 5 + 1);
  for (int i = 0; i < 5; i++)
    MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);

  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  for (int i = 0; i < iters; i++)
    MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  double loop = (MPI_Wtime() - t0) / iters, loop_sum;
  MPI_Allreduce(&loop, &loop_sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  loop = loop_sum / n;

  for (int i = 0; i < iters; i++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double s = MPI_Wtime();
    MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    mine[i] = MPI_Wtime() - s;
  }
  MPI_Allreduce(mine, slowest, iters, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  qsort(slowest, iters, sizeof(double), cmp);
  double median = iters % 2 ? slowest[iters / 2]
                            : 0.5 * (slowest[iters / 2 - 1] + slowest[iters / 2]);

  /* The sum of every rank's inputs, checked on one element: a wrong answer is no
   * reference. */
  float want = 0;
  for (int r = 0; r < n; r++) want += (float)((r * 7 + (count - 1)) % 5 + 1);
  if (recv[count - 1] != want) {
    fprintf(stderr, "allreduce_ref: wrong sum %g, expected %g\n", recv[count - 1], want);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (rank == 0) {
    double f = 2.0 * (n - 1) / n, b = (double)(count * sizeof(float));
    printf("loop_time_s=%.9e loop_busbw_gb_s=%.6f median_time_s=%.9e median_busbw_gb_s=%.6f\n",
           loop, b / loop / 1e9 * f, median, b / median / 1e9 * f);
  }
  free(send);
  free(recv);
  free(mine);
  free(slowest);
  MPI_Finalize();
  return 0;
}

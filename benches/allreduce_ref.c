/* Reference timing of MPI_Allreduce the usual way (as nccl-tests and the OSU
 * micro-benchmarks do): warm up, barrier, run ITERS operations back to back, time
 * the loop, divide, take the slowest rank. Prints the bus bandwidth (nccl-tests:
 * algbw x 2(n-1)/n) in 1e9 bytes/s, for the peer check in tests/comm.rs.
 *
 * usage: mpirun -np N allreduce_ref BYTES ITERS */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, n;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  if (argc != 3) {
    if (rank == 0) fprintf(stderr, "usage: allreduce_ref BYTES ITERS\n");
    MPI_Finalize();
    return 2;
  }
  long bytes = atol(argv[1]);
  int iters = atoi(argv[2]);
  long count = bytes / (long)sizeof(float);
  float *send = malloc(count * sizeof(float));
  float *recv = malloc(count * sizeof(float));
  for (long i = 0; i < count; i++) send[i] = (float)((rank * 7 + i) % 5 + 1);
  for (int i = 0; i < 5; i++)
    MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  for (int i = 0; i < iters; i++)
    MPI_Allreduce(send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  double t = (MPI_Wtime() - t0) / iters, slowest;
  MPI_Reduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    double algbw = (double)(count * sizeof(float)) / slowest / 1e9;
    printf("%.9e %.6f\n", slowest, algbw * 2.0 * (n - 1) / n);
  }
  free(send);
  free(recv);
  MPI_Finalize();
  return 0;
}

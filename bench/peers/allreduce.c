/* The C peer of the all-reduce rows (bench/suites/dist.ts, which compiles this file with `mpicc -O2` into a temp
 * directory and launches it with mpirun, as it launches our binding's ranks): MPI_Allreduce of f32, sum, in place
 * (MPI_IN_PLACE, as src/dist/mpi.ts calls it), per size `warmup` untimed calls then `reps` timed ones; before each
 * call every rank refills its buffer with rank + 1 (untimed) and passes a barrier; the sample is rank 0's
 * MPI_Wtime around the call. Rank 0 prints one JSON line per size, the format bench/suites/dist.ts parseRankLines
 * reads (the TypeScript ranks print the same): {"n":N,"ranks":R,"ok":0|1,"ms":[...]}; ok: on every rank, every
 * element of every reduction came out R(R+1)/2.
 * Usage: allreduce REPS WARMUP N1 [N2 ...] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int reps = argc < 4 ? 0 : atoi(argv[1]), warmup = argc < 4 ? -1 : atoi(argv[2]);
  if (reps < 1 || warmup < 0) { if (rank == 0) fprintf(stderr, "usage: allreduce REPS>=1 WARMUP>=0 N1 [N2 ...]\n"); MPI_Abort(MPI_COMM_WORLD, 2); }
  const float want = (float)(size * (size + 1) / 2);
  for (int a = 3; a < argc; a++) {
    long n = atol(argv[a]);
    float *buf = malloc(n * sizeof(float));
    double *ms = malloc(reps * sizeof(double));
    if (n < 1 || n > 0x7fffffff || buf == NULL || ms == NULL) { fprintf(stderr, "allreduce: bad size or out of memory: %s\n", argv[a]); MPI_Abort(MPI_COMM_WORLD, 2); }
    int ok = 1; /* every rank runs every call (a rank that left the loop early would hang the others) */
    for (int r = 0; r < warmup + reps; r++) {
      for (long i = 0; i < n; i++) buf[i] = (float)(rank + 1);
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double t1 = MPI_Wtime();
      if (r >= warmup) ms[r - warmup] = (t1 - t0) * 1e3;
      for (long i = 0; i < n; i++) if (buf[i] != want) { ok = 0; break; }
    }
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD); /* ok on every rank */
    if (rank == 0) {
      printf("{\"n\":%ld,\"ranks\":%d,\"ok\":%d,\"ms\":[", n, size, ok);
      for (int r = 0; r < reps; r++) printf("%s%.6f", r ? "," : "", ms[r]);
      printf("]}\n");
      fflush(stdout);
    }
    free(buf);
    free(ms);
  }
  MPI_Finalize();
  return 0;
}

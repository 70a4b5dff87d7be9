/**
 * Distributed runs over MPI (src/dist/mpi.ts): the world of this process (`world`: size, rank, localRank) and its
 * collectives. Without an MPI launcher the world is one process and every collective is a no-op.
 */
export {
  agreedToStop,
  allReduce,
  barrier,
  broadcast,
  detectLaunch,
  finalize,
  firstFailure,
  FLAVORS,
  launched,
  loadMpi,
  LocalComm,
  MpiComm,
  MpiError,
  world,
  worldComm,
  type Comm,
  type Flavor,
  type FlavorName,
  type Launch,
  type MpiLibrary,
  type ReduceOp,
} from "./mpi.ts";

// A consumer of hattn::dist: built (not run) by the packaging tests, so that the installed package
// is shown to find MPI for it. Run under mpiexec, it sums each rank's vector in rank order.
#include <hattn/dist/communicator.hpp>

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  const hattn::dist::Environment mpi(&argc, &argv);
  const hattn::dist::Communicator comm;
  std::vector<float> v(3, float(comm.rank() + 1));
  comm.sum_in_rank_order(std::span<float>(v));
  std::printf("rank %d of %d: %g\n", comm.rank(), comm.size(), double(v[0]));
  return 0;
}

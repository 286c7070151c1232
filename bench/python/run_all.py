"""run_all.py - every Python multiprocessing benchmark, in the order of mpipc_bench's suites:
python3 bench/python/run_all.py [--quick] [--tsv FILE] [suite-filter]"""

import bench_manager
import bench_objects
import bench_pipe
import bench_queue
import bench_value
import common

if __name__ == "__main__":
    common.main(bench_objects.SUITES[:2] + bench_value.SUITES + bench_pipe.SUITES +
                bench_objects.SUITES[2:] + bench_queue.SUITES + bench_manager.SUITES)

from . import bench_item

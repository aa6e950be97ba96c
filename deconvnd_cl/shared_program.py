"""The program every layer of a rank and storage type shares (shared.mako): the packs and the weight repack
(pack.mako; launched by packing.py and strategies/weight_repack.py) and the fixed-order reductions (reduce.mako;
reduction.py). One program, not one per kind: a process's first layer pays for one build fewer (about 0.1 s on
PoCL), and every later layer of the rank builds none of it."""

from .kernel_key import CL_TYPES, KernelKey, dtype_tag
from .kernel_manager import manager
from .render import render
from .signatures import Acc, Idx, In, Int, Out, Signature


class SharedKernels:
    def key(self, nd, dtype, index_bits):
        return KernelKey("shared", "common", nd, dtype_tag(dtype), index_bits)

    def signatures(self, key):
        nd = key.nd
        pack = (Idx("dst_plane"), Idx("grid_size"), Idx("src_plane"), Int("n_split"), Idx("rows"),
                Idx("rows_per_item"), Idx("grid", nd), Idx("lo", nd), Int("split", nd), Idx("ext", nd))
        return {
            "_pack": Signature(In("src"), Out("dst"), *pack),
            "_pack_split": Signature(In("src"), Out("dst"), *pack),
            "_pack_cl": Signature(In("src"), Out("dst"), Int("channels"), Int("group_maps"), Int("blocks_per_group"),
                                  Int("block_maps"), *pack),
            "_pack_w": Signature(In("w"), Out("wp"), In("taps", "int"), Int("ks"), Int("tm"), Int("cig"),
                                 Int("cog"), Int("tiles"), Int("tile_of_co"), Idx("rows")),
            "_bias": Signature(In("src"), Out("dst"), Idx("n"), Idx("maps"), Idx("length"), Acc("scale"),
                               Acc("momentum")),
            "_rows": Signature(In("src"), Out("part", "acc"), Idx("rows"), Idx("length")),
            "_accumulate": Signature(In("src"), Out("sum", "acc"), Idx("count"), Int("first")),
            "_finalize": Signature(In("part", "acc"), Out("dst"), Idx("count"), Int("n_parts"), Acc("scale"),
                                   Acc("momentum")),
        }

    def source(self, key):
        return render("shared.mako", name=key.name, nd=key.nd, dtype=CL_TYPES[key.dtype],
                      index_bits=key.index_bits, signatures=self.signatures(key))


SHARED = SharedKernels()


def program(queue, nd, dtype, index_bits):
    return manager().program(queue, SHARED.key(nd, dtype, index_bits), SHARED)

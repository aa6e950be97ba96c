## The program every layer of a rank and storage type shares: the packs and the weight repack (pack.mako) and
## the fixed-order reductions (reduce.mako), one program so a process builds it once, not once per kind.
## Vectors are 4 wide (dcl_accv): the channels-last pack transposes 4 x 4 blocks.
<%namespace name="c" file="common.mako"/>\
${c.prelude(dtype, index_bits, 4)}
<%include file="pack.mako"/>
<%include file="reduce.mako"/>

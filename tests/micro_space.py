"""A 12-op space small enough to profile, search and train in seconds: the shared input
of the CLI tests."""

MICRO = """\
name: micro
description: a 12-op space for the CLI tests
input_size: 16
num_classes: 10
stem: mbv2
init_dim: 8
head_dim: 8
last_dim: 32
primitives:
  head: [mbconv_k3_t3]
  stack: [mbconv_k3_t3, skip_connect]
adjoin_connect_nums: [2, 2, 2]
blocks:
  ch: [8, 12, 16]
  fm: [8, 4, 4]
  stage: [0, 1, 1, 2]
  num_layers: [0, 1, 1]
search:
  epochs: 4
  arch_update_epoch: 1
  batch_size: 16
"""
MICRO_OPS = 12
# stem, then 8 -> 12 (stride 2) -> 16 with one stacked layer, then the final conv
MICRO_NET_CONFIG = ("[[8, 8], 'mbconv_k3_t1', [], 0, 1]|[[8, 12], 'mbconv_k3_t3', ['mbconv_k3_t3'], 1, 2]|"
                    "[[12, 16], 'mbconv_k3_t3', [], 0, 1]|[[16, 32], 'conv1_1']")

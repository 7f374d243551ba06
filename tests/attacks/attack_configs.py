"""Configs the attack tests share (imported by name: pytest puts this folder on the path)."""

#: LeNet on the bundled digits, a cheap attack, a light defence, two seeds: seconds per run
SMALL = """
[victim]
name = "lenet"
split = "pool1"
data = "digits"
[victim.train]
epochs = 1
optimizer = "adam"
lr = 0.001
[attack]
name = "nearest-neighbour"
[private]
name = "lfw-faces"
count = 20
[aux]
name = "sample-patches"
count = 100
[[defences]]
name = "gaussian_noise"
sigma = 0.1
[run]
seeds = [0, 1]
name = "small"
"""

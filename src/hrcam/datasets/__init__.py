"""Builders of whole data sets, run by ``hrcam data …``; not imported by ``import hrcam``.

- :func:`~.imagenet_animals.build_imagenet_animals`: the paper's 398 animal classes of
  ILSVRC-2012 as linked ``train/`` and ``test/`` class folders;
- :func:`~.fashion_loc.make_fashion_loc`: Fashion-MNIST items on cluttered canvases with exact
  masks, a localization benchmark that trains on a CPU.
"""

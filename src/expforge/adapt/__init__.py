"""Domain adaptation of the font-trained digit CNN to *unlabeled* real digits (see :mod:`expforge.adapt.core`)."""

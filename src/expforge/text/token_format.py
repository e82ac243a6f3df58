"""How token ids are stored: the tokenizer kinds and the id type, shared by the corpus and the tokenizers.

A corpus (:mod:`expforge.text.corpus`) reads token files and loads its tokenizer; the tokenizers
(:mod:`expforge.text.tokenize`) must produce ids that fit those files. Both depend on these few facts, kept here
so that neither has to import the other to learn them.
"""

from __future__ import annotations

import numpy as np

TOKENIZERS = ("char", "bpe")
#: Token ids are stored as uint16, so ids 0..65535: at most 65,536 distinct tokens.
MAX_VOCAB_SIZE = 1 << 16
TOKEN_DTYPE = np.dtype("<u2")

"""The benchmark's fixed vocabulary: contrasts, contrast pairs, directions, tissue classes.

Every module that names a contrast, a direction or a tissue class reads it from here, so that
the command-line choices, the trainer, the method contract and the label maps agree. The method
contract itself is pair-neutral (domains ``a``/``b``, :mod:`mrbench.pairs`); users read contrast
names (``t2_to_flair``), mapped by :mod:`mrbench.pairs`.
"""

from __future__ import annotations

#: every contrast a dataset kind may offer, with the name tables and figures show
CONTRASTS = {"t1": "T1w", "t1ce": "T1ce", "t2": "T2w", "pd": "PDw", "flair": "FLAIR"}

#: the pair of the paper's Table 1; a config without ``pairs`` runs this one, and its results
#: keep the layout they had before pairs existed
DEFAULT_PAIR = ("t1", "t2")

#: the two translation directions of the default pair, in table order
DIRECTIONS = ("t1_to_t2", "t2_to_t1")

#: class code of each tissue class in ``label.nii.gz`` (background is 0); white-matter lesions
#: of the phantom get the code BraTS tumours get
TISSUE_LABELS = {"csf": 1, "gm": 2, "wm": 3}
TUMOUR_LABEL = 4

#: the same codes as the names shown in tables and figures
TISSUE_CLASSES = {0: "background", 1: "CSF", 2: "GM", 3: "WM", TUMOUR_LABEL: "tumour"}

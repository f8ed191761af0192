"""The benchmark's fixed vocabulary: translation directions, modalities, tissue classes.

Every module that names a direction, a modality or a tissue class reads it from here, so that
the command-line choices, the trainer, the method contract and the label maps agree.
"""

from __future__ import annotations

#: the two translation directions, in table order
DIRECTIONS = ("t1_to_t2", "t2_to_t1")

#: the contrasts of a subject's co-registered volumes (``t1.nii.gz``, ``t2.nii.gz``)
MODALITIES = ("t1", "t2")

#: class code of each tissue class in ``label.nii.gz`` (background is 0); white-matter lesions
#: of the phantom get the code BraTS tumours get
TISSUE_LABELS = {"csf": 1, "gm": 2, "wm": 3}
TUMOUR_LABEL = 4

#: the same codes as the names shown in tables and figures
TISSUE_CLASSES = {0: "background", 1: "CSF", 2: "GM", 3: "WM", TUMOUR_LABEL: "tumour"}

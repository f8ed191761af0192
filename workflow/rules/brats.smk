# BraTS 2018: no public download; import the archive or folder named in
# datasets.brats2018.source (one rule: the case list is only known from the user's data).
# Skull-stripping and registration are skipped (done by the organisers); orientation, mask and
# normalisation are applied to the contrasts the dataset's pairs need (and T1). Writes the subjects folder; checks the archive against the
# committed config/splits/brats2018.tsv.

from mrbench.datasets.kind import needed_contrasts as _needed_contrasts

BRATS_CFG = dataset_settings("brats2018", config["datasets"].get("brats2018"))
BRATS_SPLIT = split_file_of("brats2018", BRATS_CFG)
# a committed split is an input (read and checked against the archive, never rewritten); only
# where no split file exists does the import write one
BRATS_SPLIT_COMMITTED = Path(BRATS_SPLIT).exists()
#: contrasts imported: those of the dataset's pairs, and T1 (tissue classes)
BRATS_CONTRASTS = list(_needed_contrasts("brats2018", BRATS_CFG))


rule brats_import:
    input:
        # no input while the source is not configured: the DAG still lists the import, and the
        # job stops with a message naming the config key (mrbench import-brats)
        source=lambda w: [BRATS_CFG["source"]] if BRATS_CFG.get("source") else [],
        split=[BRATS_SPLIT] if BRATS_SPLIT_COMMITTED else [],
    output:
        subjects=directory(f"{RESULTS}/data/brats2018/subjects"),
        split=[] if BRATS_SPLIT_COMMITTED else [BRATS_SPLIT],
    log:
        f"{RESULTS}/logs/data/brats2018/import.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/brats2018/import.tsv"
    conda:
        CONDA_ENV
    threads: 4
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        source=lambda w: BRATS_CFG.get("source") or "",
        split=lambda w: BRATS_SPLIT,
        contrasts=BRATS_CONTRASTS,
    shell:
        "python -m mrbench.cli import-brats --source {params.source:q} --out {output.subjects:q} --splits {params.split:q}"
        " --contrasts {params.contrasts:q} --workdir resources/brats2018 --jobs {threads} > {log:q} 2>&1"

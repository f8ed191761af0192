# BraTS 2018: no public download; import the archive or folder named in
# datasets.brats2018.source (one rule: the case list is only known from the user's data).
# Skull-stripping and registration are skipped (done by the organisers); orientation, mask and
# normalisation are applied. Writes the subjects folder and config/splits/brats2018.tsv.

BRATS_CFG = config["datasets"].get("brats2018", {})


def brats_source(wildcards):
    source = BRATS_CFG.get("source")
    if not source:
        raise ValueError(
            "config key datasets.brats2018.source: not set; give the BraTS 2018 archive "
            "(.zip/.tar.gz) or folder received from the organisers"
        )
    return source


rule brats_import:
    input:
        brats_source,
    output:
        subjects=directory(f"{RESULTS}/data/brats2018/subjects"),
        split=split_file_of("brats2018", BRATS_CFG),
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
    shell:
        "python -m mrbench.cli import-brats --source {input} --out {output.subjects} --splits {output.split}"
        " --workdir resources/brats2018 --jobs {threads} > {log} 2>&1"

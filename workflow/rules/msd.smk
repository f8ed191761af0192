# MSD Task01_BrainTumour (dataset `msd_brats`), the public stand-in for BraTS: download with
# md5 (login node), then import the channels of the contrasts the dataset's pairs need (and T1;
# default: channels 1, T1w, and 3, T2w) of the 4D volumes like BraTS.

from mrbench.datasets import msd as _msd
from mrbench.datasets.kind import needed_contrasts as _needed_contrasts

MSD_CFG = dataset_settings("msd_brats", config["datasets"].get("msd_brats"))
MSD_CONTRASTS = list(_needed_contrasts("msd_brats", MSD_CFG))


localrules:
    msd_download,


rule msd_download:
    output:
        "resources/msd_brats/Task01_BrainTumour.tar",
    log:
        f"{RESULTS}/logs/data/msd_brats/download.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/msd_brats/download.tsv"
    retries: 2
    conda:
        CONDA_ENV
    params:
        url=MSD_CFG.get("url", _msd.URL),
        md5=MSD_CFG.get("md5") if isinstance(MSD_CFG.get("md5"), str) else _msd.MD5,
    shell:
        "python -m mrbench.cli download --url {params.url:q} --md5 {params.md5:q} --out {output:q} > {log:q} 2>&1"


rule msd_import:
    input:
        "resources/msd_brats/Task01_BrainTumour.tar",
    output:
        subjects=directory(f"{RESULTS}/data/msd_brats/subjects"),
        split=split_file_of("msd_brats", MSD_CFG),
    log:
        f"{RESULTS}/logs/data/msd_brats/import.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/msd_brats/import.tsv"
    conda:
        CONDA_ENV
    threads: 4
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        limit=(
            ["--limit", MSD_CFG["n_subjects_max"]]
            if MSD_CFG.get("n_subjects_max")
            else []
        ),
        contrasts=MSD_CONTRASTS,
    shell:
        "python -m mrbench.cli import-msd --source {input:q} --out {output.subjects:q} --splits {output.split:q}"
        " --contrasts {params.contrasts:q} --workdir resources/msd_brats --jobs {threads} {params.limit:q} > {log:q} 2>&1"

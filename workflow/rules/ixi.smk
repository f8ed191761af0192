# IXI: download the T1/T2 archives (and IXI-PD.tar where a configured pair needs PD) on the login
# node, check them against the committed split config/splits/ixi.tsv (or, where no split file
# exists, choose the subjects from the T1/T2 archives' file lists: checkpoint ixi_split writes
# it), extract and preprocess each subject (skull-strip, T2 -> T1 registration, PD moved with the
# T2's transform, normalisation), then a QC table of all subjects.
# Method and parameters: docs/datasets.md. Consumed by the generic `slices` rule (data.smk).

from mrbench.datasets.kind import needed_contrasts as _needed_contrasts
from mrbench.pairs import subject_files as _subject_files

#: contrasts every IXI subject is written with: those of the dataset's pairs, and T1 (the
#: registration reference); PD is downloaded, checked and extracted only where listed here
IXI_CONTRASTS = _needed_contrasts("ixi", IXI_CFG)
IXI_PD = "pd" in IXI_CONTRASTS
IXI_PD_TAR = [f"{IXI_RES}/IXI-PD.tar"] if IXI_PD else []


localrules:
    ixi_download,


rule ixi_download:
    output:
        f"{IXI_RES}/IXI-{{modality}}.tar",
    log:
        f"{RESULTS}/logs/data/ixi/download_{{modality}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/ixi/download_{{modality}}.tsv"
    wildcard_constraints:
        modality="T1|T2|PD",
    retries: 2
    conda:
        CONDA_ENV
    params:
        url=lambda w: f"{IXI_CFG.get('url_base', _ixi.URL_BASE).rstrip('/')}/IXI-{w.modality}.tar",
        md5=lambda w: _ixi_md5(w.modality),
    shell:
        "python -m mrbench.cli download --url {params.url:q} --md5 {params.md5:q} --out {output:q} > {log:q} 2>&1"


rule ixi_check:
    input:
        t1=f"{IXI_RES}/IXI-T1.tar",
        t2=f"{IXI_RES}/IXI-T2.tar",
        pd=IXI_PD_TAR,
        split=IXI_SPLIT,
    output:
        f"{IXI_RES}/archive_check.txt",
    log:
        f"{RESULTS}/logs/data/ixi/check.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/ixi/check.tsv"
    conda:
        CONDA_ENV
    params:
        pd=["--pd-tar", *IXI_PD_TAR] if IXI_PD else [],
    shell:
        "python -m mrbench.cli ixi check --t1-tar {input.t1:q} --t2-tar {input.t2:q} {params.pd:q}"
        " --split {input.split:q} --out {output:q} > {log:q} 2>&1"


# only where the split file is absent: a committed split is read, never rewritten
if not IXI_SPLIT_COMMITTED:

    checkpoint ixi_split:
        input:
            t1=f"{IXI_RES}/IXI-T1.tar",
            t2=f"{IXI_RES}/IXI-T2.tar",
        output:
            split=IXI_SPLIT,
            excluded=f"{IXI_RES}/excluded.tsv",
        log:
            f"{RESULTS}/logs/data/ixi/split.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/ixi/split.tsv"
        conda:
            CONDA_ENV
        params:
            n=IXI_CFG["n_subjects"],
            n_test=IXI_CFG["n_test"],
            val=IXI_CFG["val_fraction"],
        shell:
            "python -m mrbench.cli ixi split --t1-tar {input.t1:q} --t2-tar {input.t2:q} --out {output.split:q}"
            " --excluded {output.excluded:q} --n-subjects {params.n:q} --n-test {params.n_test:q}"
            " --val-fraction {params.val:q} > {log:q} 2>&1"


rule ixi_extract:
    input:
        t1=f"{IXI_RES}/IXI-T1.tar",
        t2=f"{IXI_RES}/IXI-T2.tar",
        checked=f"{IXI_RES}/archive_check.txt",
    output:
        t1=temp(f"{IXI_RES}/raw/{{subject}}/t1.nii.gz"),
        t2=temp(f"{IXI_RES}/raw/{{subject}}/t2.nii.gz"),
    log:
        f"{RESULTS}/logs/data/ixi/extract/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/ixi/extract/{{subject}}.tsv"
    wildcard_constraints:
        subject=r"IXI\d{3}-(Guys|HH|IOP)-\d{4}",
    conda:
        CONDA_ENV
    resources:
        mem_mb=500,
        runtime=10,
    params:
        out=lambda w, output: str(Path(output.t1).parent),
    shell:
        "python -m mrbench.cli ixi extract --t1-tar {input.t1:q} --t2-tar {input.t2:q}"
        " --subject {wildcards.subject:q} --out {params.out:q} > {log:q} 2>&1"


# PD in its own job (only where a pair needs it): the T1/T2 extraction is unchanged
rule ixi_extract_pd:
    input:
        pd=IXI_PD_TAR,
        checked=f"{IXI_RES}/archive_check.txt",
    output:
        pd=temp(f"{IXI_RES}/raw/{{subject}}/pd.nii.gz"),
    log:
        f"{RESULTS}/logs/data/ixi/extract/{{subject}}_pd.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/ixi/extract/{{subject}}_pd.tsv"
    wildcard_constraints:
        subject=r"IXI\d{3}-(Guys|HH|IOP)-\d{4}",
    conda:
        CONDA_ENV
    resources:
        mem_mb=500,
        runtime=10,
    params:
        out=lambda w, output: str(Path(output.pd).parent),
    shell:
        "python -m mrbench.cli ixi extract --pd-tar {input.pd:q}"
        " --subject {wildcards.subject:q} --out {params.out:q} > {log:q} 2>&1"


rule ixi_preprocess:
    input:
        t1=f"{IXI_RES}/raw/{{subject}}/t1.nii.gz",
        t2=f"{IXI_RES}/raw/{{subject}}/t2.nii.gz",
        pd=[f"{IXI_RES}/raw/{{subject}}/pd.nii.gz"] if IXI_PD else [],
    output:
        vols=expand(
            f"{RESULTS}/data/ixi/subjects/{{{{subject}}}}/{{mod}}.nii.gz",
            mod=_subject_files(IXI_CONTRASTS),
        ),
        qc_png=f"{RESULTS}/data/ixi/subjects/{{subject}}/qc.png",
        qc_json=f"{RESULTS}/data/ixi/subjects/{{subject}}/qc.json",
    log:
        f"{RESULTS}/logs/data/ixi/preprocess/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/ixi/preprocess/{{subject}}.tsv"
    wildcard_constraints:
        subject=r"IXI\d{3}-(Guys|HH|IOP)-\d{4}",
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        flags=_ixi_preprocess_flags(),
        pd=lambda w, input: ["--pd", *input.pd] if IXI_PD else [],
        contrasts=list(IXI_CONTRASTS),
        out=lambda w, output: str(Path(output.qc_json).parent),
    shell:
        "python -m mrbench.cli preprocess --t1 {input.t1:q} --t2 {input.t2:q} {params.pd:q}"
        " --contrasts {params.contrasts:q} --subject {wildcards.subject:q}"
        " --out {params.out:q} {params.flags:q}"
        " --threads {threads} > {log:q} 2>&1"


rule ixi_qc:
    input:
        lambda w: expand(
            f"{RESULTS}/data/ixi/subjects/{{subject}}/qc.json", subject=ixi_subjects()
        ),
    output:
        f"{RESULTS}/data/ixi/qc.tsv",
    log:
        f"{RESULTS}/logs/data/ixi/qc.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/ixi/qc.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m mrbench.cli ixi qc --out {output:q} {input:q} > {log:q} 2>&1"

# Data: the phantom generator and the generic slice store. Real datasets: ixi.smk, brats.smk, msd.smk.


rule phantom_subject:
    output:
        raw=expand(
            "resources/phantom/{{subject}}_{mod}.nii.gz",
            mod=["t1", "t2", "mask", "label"],
        ),
        vols=expand(
            f"{RESULTS}/data/phantom/subjects/{{{{subject}}}}/{{mod}}.nii.gz",
            mod=["t1", "t2", "mask", "label"],
        ),
    log:
        f"{RESULTS}/logs/data/phantom/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/phantom/{{subject}}.tsv"
    conda:
        CONDA_ENV
    params:
        n=lambda w: dataset_cfg("phantom").get("n_subjects", 12),
        seed=lambda w: dataset_cfg("phantom").get("seed", 0),
        voxel=lambda w: dataset_cfg("phantom").get("voxel_size", 1.0),
        noise=lambda w: dataset_cfg("phantom").get("noise", 0.02),
        subjects=lambda w, output: Path(output.vols[0]).parent.parent,
    shell:
        "python -m mrbench.cli phantom --out resources/phantom --only {wildcards.subject:q}"
        " --n-subjects {params.n:q} --seed {params.seed:q} --voxel-size {params.voxel:q}"
        " --noise {params.noise:q} --subjects-dir {params.subjects:q} > {log:q} 2>&1"


rule slices:
    input:
        vols=lambda w: subject_volumes(w.dataset),
        splits=lambda w: split_file_of(w.dataset, dataset_cfg(w.dataset)),
    output:
        directory(f"{RESULTS}/data/{{dataset}}/slices/{{split}}"),
    log:
        f"{RESULTS}/logs/data/{{dataset}}/slices_{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/{{dataset}}/slices_{{split}}.tsv"
    conda:
        CONDA_ENV
    params:
        size=lambda w: dataset_cfg(w.dataset)["image_size"],
        n=lambda w: dataset_cfg(w.dataset).get("slices_per_subject", 100),
        subjects=lambda w: f"{RESULTS}/data/{w.dataset}/subjects",
        store=lambda w: f"{RESULTS}/data/{w.dataset}/slices",
    shell:
        "python -m mrbench.cli slices --subjects-dir {params.subjects:q}"
        " --splits {input.splits:q} --out {params.store:q}"
        " --split {wildcards.split:q} --size {params.size:q} --slices-per-subject {params.n:q}"
        " > {log:q} 2>&1"

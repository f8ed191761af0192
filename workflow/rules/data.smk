# Data: subjects of datasets whose plugin acquires them one by one (the phantom, dataset plugins),
# and the generic slice store. Kinds with their own rules: ixi.smk, brats.smk, msd.smk.


rule dataset_subject:
    output:
        vols=expand(
            f"{RESULTS}/data/{{{{dataset}}}}/subjects/{{{{subject}}}}/{{mod}}.nii.gz",
            mod=VOLUMES,
        ),
    log:
        f"{RESULTS}/logs/data/{{dataset}}/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/{{dataset}}/{{subject}}.tsv"
    wildcard_constraints:
        # only kinds that acquire subject by subject; the others have their own rules
        dataset="|".join(SUBJECT_DATASETS) or "(?!)",
    conda:
        CONDA_ENV
    params:
        settings=lambda w: shlex.quote(
            json.dumps(dataset_cfg(w.dataset), sort_keys=True)
        ),
        plugins=plugin_path_flags(),
        out=lambda w, output: Path(output.vols[0]).parent,
    shell:
        "python -m mrbench.cli dataset-subject --dataset {wildcards.dataset}"
        " --settings {params.settings} --subject {wildcards.subject} --out {params.out}"
        " {params.plugins} > {log} 2>&1"


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
        n=lambda w: dataset_cfg(w.dataset)["slices_per_subject"],
        subjects=lambda w: f"{RESULTS}/data/{w.dataset}/subjects",
        store=lambda w: f"{RESULTS}/data/{w.dataset}/slices",
    shell:
        "python -m mrbench.cli slices --subjects-dir {params.subjects}"
        " --splits {input.splits} --out {params.store}"
        " --split {wildcards.split} --size {params.size} --slices-per-subject {params.n}"
        " > {log} 2>&1"

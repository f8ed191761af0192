# Data: subjects of datasets whose plugin acquires them one by one (the phantom, dataset plugins),
# and the generic slice store, each with the contrasts the dataset's pairs need. Kinds with their
# own rules: ixi.smk, brats.smk, msd.smk.


for _contrasts, _datasets in _subject_rule_groups().items():

    rule:
        name:
            (
                "dataset_subject"
                if tuple(_contrasts) == ("t1", "t2")
                else "dataset_subject_" + "_".join(_contrasts)
            )
        output:
            vols=expand(
                f"{RESULTS}/data/{{{{dataset}}}}/subjects/{{{{subject}}}}/{{mod}}.nii.gz",
                mod=_subject_files(_contrasts),
            ),
        log:
            f"{RESULTS}/logs/data/{{dataset}}/{{subject}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/{{dataset}}/{{subject}}.tsv"
        wildcard_constraints:
            # only kinds that acquire subject by subject; the others have their own rules
            dataset="|".join(_datasets) or "(?!)",
        conda:
            CONDA_ENV
        params:
            settings=lambda w: json.dumps(dataset_cfg(w.dataset), sort_keys=True),
            out=lambda w, output: Path(output.vols[0]).parent,
        shell:
            "python -m mrbench.cli dataset-subject --dataset {wildcards.dataset:q}"
            " --settings {params.settings:q} --subject {wildcards.subject:q} --out {params.out:q}"
            " > {log:q} 2>&1"


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
        contrasts=lambda w: list(dataset_contrasts(w.dataset)),
    shell:
        "python -m mrbench.cli slices --subjects-dir {params.subjects:q}"
        " --splits {input.splits:q} --out {params.store:q} --contrasts {params.contrasts:q}"
        " --split {wildcards.split:q} --size {params.size:q} --slices-per-subject {params.n:q}"
        " > {log:q} 2>&1"

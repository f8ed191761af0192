# Evaluation: translate every test split with every trained model, then score it.
# One translation and one metrics file per dataset x method x seed x direction.


rule translate:
    input:
        model=MODEL,
        store=TEST_STORE,
    output:
        directory(PREDICTIONS),
    log:
        f"{RESULTS}/logs/translate/{{dataset}}/{{method}}/seed{{seed}}/{{direction}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/translate/{{dataset}}/{{method}}/seed{{seed}}/{{direction}}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        gpu=lambda w: min(1, gpu_for(w.method)),
    params:
        device=EVAL["device"],
        batch=EVAL["batch_size"],
    shell:
        "python -m mrbench.cli translate --checkpoint {input.model} --store {input.store}"
        " --direction {wildcards.direction} --out-dir {output} --device {params.device}"
        " --batch-size {params.batch} --seed {wildcards.seed} > {log} 2>&1"


rule metrics:
    input:
        pred=PREDICTIONS,
        store=TEST_STORE,
    output:
        METRICS,
    log:
        f"{RESULTS}/logs/metrics/{{dataset}}/{{method}}/seed{{seed}}/{{direction}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/metrics/{{dataset}}/{{method}}/seed{{seed}}/{{direction}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        protocols=" ".join(EVAL["protocols"]),
        hash=lambda w: config_hash(config, w.dataset, w.method),
        label=lambda w: shlex.quote(ROSTER.label(w.method)),
    shell:
        "python -m mrbench.cli metrics --pred-dir {input.pred} --store {input.store}"
        " --direction {wildcards.direction} --protocols {params.protocols}"
        " --dataset {wildcards.dataset} --method {wildcards.method} --seed {wildcards.seed}"
        " --label {params.label} --config-hash {params.hash} --out {output} > {log} 2>&1"


rule fidelity:
    input:
        pred=PREDICTIONS,
        store=TEST_STORE,
    output:
        FIDELITY,
    log:
        f"{RESULTS}/logs/fidelity/{{dataset}}/{{method}}/seed{{seed}}/{{direction}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fidelity/{{dataset}}/{{method}}/seed{{seed}}/{{direction}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    params:
        extractor=EVAL["fid"]["feature_extractor"],
        weights=(
            f"--weights-path {shlex.quote(str(EVAL['fid']['weights_path']))}"
            if EVAL["fid"]["weights_path"]
            else ""
        ),
        kid=EVAL["fid"]["kid_subset_size"],
        device=EVAL["device"],
    shell:
        "python -m mrbench.cli report fidelity-split --pred-dir {input.pred} --store {input.store}"
        " --direction {wildcards.direction} --feature-extractor {params.extractor}"
        " {params.weights} --kid-subset-size {params.kid} --device {params.device}"
        " --dataset {wildcards.dataset} --method {wildcards.method} --seed {wildcards.seed}"
        " --out {output} > {log} 2>&1"

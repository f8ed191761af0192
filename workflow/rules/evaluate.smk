# Evaluation: translate every test split with every trained model, then score it.
# One translation and one metrics file per dataset x method x seed x direction; the directions
# of every configured pair (`<a>_to_<b>`), each translated by the model of its pair.


rule translate:
    input:
        # the model of the configured pair that holds the direction
        model=model_of_direction,
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
        gpu=lambda w: eval_gpus(config, gpu_for(w.method), EVAL["device"]),
        runtime=_translate_runtime,
    params:
        device=lambda w: eval_device(
            EVAL["device"], eval_gpus(config, gpu_for(w.method), EVAL["device"])
        ),
        batch=EVAL["batch_size"],
    shell:
        "python -m mrbench.cli translate --checkpoint {input.model:q} --store {input.store:q}"
        " --direction {wildcards.direction:q} --out-dir {output:q} --device {params.device:q}"
        " --batch-size {params.batch:q} --seed {wildcards.seed:q} > {log:q} 2>&1"


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
        protocols=list(EVAL["protocols"]),
        hash=lambda w: config_hash(config, w.dataset, w.method),
        label=lambda w: ROSTER.label(w.method),
    shell:
        "python -m mrbench.cli metrics --pred-dir {input.pred:q} --store {input.store:q}"
        " --direction {wildcards.direction:q} --protocols {params.protocols:q}"
        " --dataset {wildcards.dataset:q} --method {wildcards.method:q} --seed {wildcards.seed:q}"
        " --label {params.label:q} --config-hash {params.hash:q} --out {output:q} > {log:q} 2>&1"


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
    resources:
        gpu=eval_gpus(config, 1, EVAL["device"]),
    params:
        extractor=EVAL["fid"]["feature_extractor"],
        weights=(
            ["--weights-path", str(EVAL["fid"]["weights_path"])]
            if EVAL["fid"]["weights_path"]
            else []
        ),
        kid=EVAL["fid"]["kid_subset_size"],
        device=eval_device(EVAL["device"], eval_gpus(config, 1, EVAL["device"])),
    shell:
        "python -m mrbench.cli report fidelity-split --pred-dir {input.pred:q} --store {input.store:q}"
        " --direction {wildcards.direction:q} --feature-extractor {params.extractor:q}"
        " {params.weights:q} --kid-subset-size {params.kid:q} --device {params.device:q}"
        " --dataset {wildcards.dataset:q} --method {wildcards.method:q} --seed {wildcards.seed:q}"
        " --out {output:q} > {log:q} 2>&1"

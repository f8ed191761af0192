# Training: one job per dataset x method x seed. A trainable method asks for one GPU (or
# training.gpus_per_job); `mrbench train` takes a free device itself (lock file per GPU) and
# resumes from checkpoints/last.pt if a killed job is re-run. model.pt is written last.


rule train:
    input:
        train=f"{RESULTS}/data/{{dataset}}/slices/train",
        val=f"{RESULTS}/data/{{dataset}}/slices/val",
    output:
        f"{RESULTS}/models/{{dataset}}/{{method}}/seed{{seed}}/model.pt",
    log:
        f"{RESULTS}/logs/train/{{dataset}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{dataset}}/{{method}}/seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        gpu=lambda w: gpu_for(w.method),
        runtime=lambda w, attempt: train_runtime_minutes(
            _train_spec(w.method),
            dataset_cfg(w.dataset)["image_size"],
            attempt,
            config,
        ),
        mem_mb=lambda w, input, attempt: train_mem_mb(
            _train_spec(w.method),
            dataset_cfg(w.dataset)["image_size"],
            attempt,
            config,
            _train_store_mb(input),
        ),
    params:
        spec=lambda w: method_spec(w.method),
        launcher=lambda w: train_launcher(gpu_for(w.method)),
        out=lambda w: f"{RESULTS}/models/{w.dataset}/{w.method}/seed{w.seed}",
        store=lambda w: f"{RESULTS}/data/{w.dataset}/slices",
        device=lambda w: train_device_flags(config, gpu_for(w.method)),
    shell:
        "{params.launcher} train --spec {params.spec}"
        " --data {params.store} --out {params.out}"
        " --seed {wildcards.seed} {params.device} --threads {threads} > {log} 2>&1"

# Training: one job per dataset x method x seed. A trainable method asks for one GPU (or
# training.gpus_per_job); `mrbench train` takes a free device itself (lock file per GPU) and
# resumes from checkpoints/last.pt if a killed job is re-run with the same spec and data (a changed
# spec, split or store starts afresh: the checkpoint records a digest of its train/val data).
# model.pt is written last; the split file's digest is a param, so a changed split reruns the job.
# One job per contrast pair of the dataset (datasets.<name>.pairs): `train` for T1w/T2w, in the
# paper's layout, and `train_pair` for the others, one folder deeper (.../seed0/t2-flair/model.pt);
# both read the same slice store (which holds every contrast of the dataset) and split.


rule train:
    input:
        train=fill(SLICE_STORE, split="train"),
        val=fill(SLICE_STORE, split="val"),
    output:
        MODEL,
    log:
        f"{RESULTS}/logs/train/{{dataset}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{dataset}}/{{method}}/seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        gpu=lambda w: gpu_for(w.method),
        runtime=lambda w, input, attempt: train_runtime_minutes(
            _train_spec(w.method, input),
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
        split=lambda w: split_digest(w.dataset),
        launcher=lambda w: shlex.split(train_launcher(gpu_for(w.method))),
        out=lambda w, output: os.path.dirname(output[0]),
        store=lambda w, input: os.path.dirname(input.train),
        device=lambda w: train_device_flags(config, gpu_for(w.method)),
        pair=lambda w: pair_args(train_pair(w)),
    shell:
        "{params.launcher:q} train --spec {params.spec:q} {params.pair:q}"
        " --data {params.store:q} --out {params.out:q}"
        " --seed {wildcards.seed:q} {params.device:q} --threads {threads}"
        " --restart-on-change > {log:q} 2>&1"


use rule train as train_pair with:
    output:
        PAIR_MODEL,
    log:
        f"{RESULTS}/logs/train/{{dataset}}/{{method}}/seed{{seed}}/{{pair_tag}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{dataset}}/{{method}}/seed{{seed}}/{{pair_tag}}.tsv"

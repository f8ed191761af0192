# Reporting: the tidy results table and every table and figure derived from it, registered for
# `snakemake --report report.html` with captions from workflow/report/.


rule tidy_results:
    input:
        metrics_files(config, RESULTS),
    output:
        tidy=report(
            TIDY,
            caption="../report/results_tidy.rst",
            category="Results",
            labels={"table": "tidy results"},
        ),
        summary=report(
            f"{TABLES_DIR}/summary.csv",
            caption="../report/summary.rst",
            category="Results",
            labels={"table": "summary"},
        ),
    log:
        f"{RESULTS}/logs/report/tidy.log",
    conda:
        CONDA_ENV
    shell:
        "python -m mrbench.cli report tidy --inputs {input} --out {output.tidy}"
        " --summary {output.summary} > {log} 2>&1"


rule table1:
    input:
        TIDY,
    output:
        **table_outputs("table1", "table1", "Table 1"),
    log:
        f"{RESULTS}/logs/report/table1.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        table_args=TABLE_ARGS,
    shell:
        "python -m mrbench.cli report table1 --tidy {input} --out {params.prefix} {params.table_args}"
        " > {log} 2>&1"


rule table2_ablation:
    input:
        TIDY,
    output:
        **table_outputs("table2_ablation", "table2", "Table 2 (ablation)"),
    log:
        f"{RESULTS}/logs/report/table2_ablation.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        table_args=TABLE_ARGS,
    shell:
        "python -m mrbench.cli report table2 --tidy {input} --out {params.prefix} {params.table_args}"
        " > {log} 2>&1"


rule paper_comparison:
    input:
        TIDY,
    output:
        **table_outputs("paper_comparison", "paper_comparison", "Paper comparison"),
    log:
        f"{RESULTS}/logs/report/paper_comparison.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        table_args=TABLE_ARGS,
        methods=" ".join(METHODS),
    shell:
        "python -m mrbench.cli report compare --tidy {input} --out {params.prefix}"
        " {params.table_args} --methods {params.methods} > {log} 2>&1"


rule significance:
    input:
        TIDY,
    output:
        **table_outputs("significance", "significance", "Significance"),
    log:
        f"{RESULTS}/logs/report/significance.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        table_args=TABLE_ARGS,
        reference=EVAL["reference_method"],
        alpha=EVAL["alpha"],
    shell:
        "python -m mrbench.cli report significance --tidy {input} --out {params.prefix}"
        " {params.table_args} --reference {params.reference} --alpha {params.alpha} > {log} 2>&1"


rule efficiency:
    input:
        models=model_files(config, RESULTS),
        predictions=prediction_dirs(config, RESULTS),
    output:
        **table_outputs("efficiency", "efficiency", "Efficiency"),
    log:
        f"{RESULTS}/logs/report/efficiency.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        threshold=(
            f"--threshold {EVAL['threshold_psnr']}"
            if EVAL["threshold_psnr"] is not None
            else ""
        ),
    shell:
        "python -m mrbench.cli report efficiency --model {input.models} --predictions {input.predictions}"
        " {params.threshold} --out {params.prefix} > {log} 2>&1"


rule fidelity_table:
    input:
        fidelity_files(config, RESULTS),
    output:
        **table_outputs("fidelity", "fidelity", "FID and KID"),
    log:
        f"{RESULTS}/logs/report/fidelity.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
    shell:
        "python -m mrbench.cli report fidelity --inputs {input} --out {params.prefix} > {log} 2>&1"


rule figure_qualitative:
    input:
        unpack(qualitative_predictions),
        store=f"{RESULTS}/data/{{dataset}}/slices/test",
    output:
        **figure_outputs(
            "qualitative_{dataset}_{direction}",
            "qualitative",
            "Qualitative",
            {"dataset": "{dataset}", "direction": "{direction}"},
        ),
    log:
        f"{RESULTS}/logs/report/qualitative_{{dataset}}_{{direction}}.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.png.removesuffix(".png"),
        pairs=qualitative_pairs,
        subject=(
            f"--subject {EVAL['qualitative']['subject']}"
            if EVAL["qualitative"]["subject"]
            else ""
        ),
        slice=(
            f"--slice {EVAL['qualitative']['slice']}"
            if EVAL["qualitative"]["slice"] is not None
            else ""
        ),
    shell:
        "python -m mrbench.cli report qualitative --store {input.store} --direction {wildcards.direction}"
        " --pred {params.pairs} {params.subject} {params.slice}"
        " --out {params.prefix} > {log} 2>&1"


rule figure_boxplot:
    input:
        TIDY,
    output:
        **figure_outputs(
            "boxplot_{dataset}",
            "boxplot",
            "Per-subject box plots",
            {"dataset": "{dataset}"},
        ),
    log:
        f"{RESULTS}/logs/report/boxplot_{{dataset}}.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.png.removesuffix(".png"),
        protocol=EVAL["table_protocol"],
        metrics=f"{EVAL['table_psnr']} {EVAL['table_ssim']} mae",
        labels=lambda w: method_label_flags(),
    shell:
        "python -m mrbench.cli report boxplot --tidy {input} --dataset {wildcards.dataset}"
        " --protocol {params.protocol} --metrics {params.metrics} {params.labels}"
        " --out {params.prefix} > {log} 2>&1"


rule figure_training_curves:
    input:
        expand(
            f"{RESULTS}/models/{{{{dataset}}}}/{{method}}/seed{FIRST_SEED}/model.pt",
            method=METHODS,
        ),
    output:
        **figure_outputs(
            "training_curves_{dataset}",
            "training_curves",
            "Training curves",
            {"dataset": "{dataset}"},
        ),
    log:
        f"{RESULTS}/logs/report/training_curves_{{dataset}}.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.png.removesuffix(".png"),
        runs=lambda w: " ".join(
            f"{m}={RESULTS}/models/{w.dataset}/{m}/seed{FIRST_SEED}" for m in METHODS
        ),
        labels=lambda w: method_label_flags(),
    shell:
        "python -m mrbench.cli report curves --run {params.runs} --title {wildcards.dataset}"
        " {params.labels} --out {params.prefix} > {log} 2>&1"


rule figure_content_maps:
    input:
        model=f"{RESULTS}/models/{{dataset}}/disdiff/seed{FIRST_SEED}/model.pt",
        store=f"{RESULTS}/data/{{dataset}}/slices/test",
    output:
        report(
            f"{FIGURES_DIR}/content_maps_{{dataset}}.png",
            caption="../report/content_maps.rst",
            category="Figures",
            subcategory="Content maps",
            labels={"dataset": "{dataset}", "figure": "content maps (Fig. 3)"},
        ),
    log:
        f"{RESULTS}/logs/report/content_maps_{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/content_maps_{{dataset}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m mrbench.cli content-maps --model {input.model} --store {input.store}"
        " --out {output} > {log} 2>&1"

# Reporting: the tidy results table and every table and figure derived from it, registered for
# `snakemake --report report.html` with captions from workflow/report/.

# content maps of a model of another pair than T1w/T2w (figure_files lists them)
PAIR_CONTENT_MAPS = (
    f"{FIGURES_DIR}/content_maps/{{dataset}}/{{method}}_{{pair_tag}}.png"
)


rule method_roster:
    output:
        **table_outputs("methods", "methods", "Methods"),
        roster=ROSTER_FILE,
    log:
        f"{RESULTS}/logs/report/methods.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        roster=ROSTER.to_json(),
    shell:
        "python -m mrbench.cli report methods --roster-json {params.roster:q}"
        " --json {output.roster:q} --out {params.prefix:q} > {log:q} 2>&1"


rule tidy_results:
    input:
        all_metrics(),
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
        "python -m mrbench.cli report tidy --inputs {input:q} --out {output.tidy:q}"
        " --summary {output.summary:q} > {log:q} 2>&1"


rule table1:
    input:
        tidy=TIDY,
        roster=ROSTER_FILE,
        models=all_models(),
    output:
        **table_outputs("table1", "table1", "Table 1"),
    log:
        f"{RESULTS}/logs/report/table1.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        table_args=TABLE_ARGS,
        selection=selection_note(config),
    shell:
        "python -m mrbench.cli report table1 --tidy {input.tidy:q} --out {params.prefix:q}"
        " {params.table_args:q} --note {params.selection:q} --model {input.models:q}"
        " > {log:q} 2>&1"


rule pairs_table:
    input:
        tidy=TIDY,
        roster=ROSTER_FILE,
    output:
        **table_outputs("pairs", "pairs", "Contrast pairs"),
    log:
        f"{RESULTS}/logs/report/pairs.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        table_args=TABLE_ARGS,
    shell:
        "python -m mrbench.cli report pairs --tidy {input.tidy:q} --out {params.prefix:q}"
        " {params.table_args:q} > {log:q} 2>&1"


rule table2_ablation:
    input:
        tidy=TIDY,
        roster=ROSTER_FILE,
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
        "python -m mrbench.cli report table2 --tidy {input.tidy:q} --out {params.prefix:q}"
        " {params.table_args:q}"
        " > {log:q} 2>&1"


rule paper_comparison:
    input:
        tidy=TIDY,
        roster=ROSTER_FILE,
    output:
        **table_outputs("paper_comparison", "paper_comparison", "Paper comparison"),
    log:
        f"{RESULTS}/logs/report/paper_comparison.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        table_args=TABLE_ARGS,
    shell:
        "python -m mrbench.cli report compare --tidy {input.tidy:q} --out {params.prefix:q}"
        " {params.table_args:q} > {log:q} 2>&1"


rule significance:
    input:
        tidy=TIDY,
        roster=ROSTER_FILE,
    output:
        **table_outputs("significance", "significance", "Significance"),
    log:
        f"{RESULTS}/logs/report/significance.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        table_args=TABLE_ARGS,
        alpha=EVAL["alpha"],
    shell:
        "python -m mrbench.cli report significance --tidy {input.tidy:q} --out {params.prefix:q}"
        " {params.table_args:q} --alpha {params.alpha:q} > {log:q} 2>&1"


rule efficiency:
    input:
        models=all_models(),
        predictions=all_predictions(),
        roster=ROSTER_FILE,
    output:
        **table_outputs("efficiency", "efficiency", "Efficiency"),
    log:
        f"{RESULTS}/logs/report/efficiency.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        runs=efficiency_runs(),
        threshold=(
            ["--threshold", EVAL["threshold_psnr"]]
            if EVAL["threshold_psnr"] is not None
            else []
        ),
    shell:
        "python -m mrbench.cli report efficiency {params.runs:q} --roster {input.roster:q}"
        " {params.threshold:q} --out {params.prefix:q} > {log:q} 2>&1"


rule fidelity_table:
    input:
        fidelity=all_fidelity(),
        roster=ROSTER_FILE,
    output:
        **table_outputs("fidelity", "fidelity", "FID and KID"),
    log:
        f"{RESULTS}/logs/report/fidelity.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
    shell:
        "python -m mrbench.cli report fidelity --inputs {input.fidelity:q} --roster {input.roster:q}"
        " --out {params.prefix:q} > {log:q} 2>&1"


rule protocols_table:
    input:
        tidy=TIDY,
        roster=ROSTER_FILE,
    output:
        **table_outputs("protocols", "protocols", "Protocol sensitivity"),
        **figure_outputs(
            "protocols_tau", "protocols_tau", "Figures", {"figure": "protocol tau"}
        ),
    log:
        f"{RESULTS}/logs/report/protocols.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
        figure=lambda w, output: output.png.removesuffix(".png"),
        metrics=EVAL["protocol_table_metrics"],
    shell:
        "python -m mrbench.cli report protocols --tidy {input.tidy:q} --roster {input.roster:q}"
        " --metrics {params.metrics:q} --out {params.prefix:q} --figure {params.figure:q}"
        " > {log:q} 2>&1"


rule figure_qualitative:
    input:
        unpack(qualitative_predictions),
        store=TEST_STORE,
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
            ["--subject", EVAL["qualitative"]["subject"]]
            if EVAL["qualitative"]["subject"]
            else []
        ),
        slice=(
            ["--slice", EVAL["qualitative"]["slice"]]
            if EVAL["qualitative"]["slice"] is not None
            else []
        ),
    shell:
        "python -m mrbench.cli report qualitative --store {input.store:q} --direction {wildcards.direction:q}"
        " --pred {params.pairs:q} {params.subject:q} {params.slice:q}"
        " --out {params.prefix:q} > {log:q} 2>&1"


rule figure_boxplot:
    input:
        tidy=TIDY,
        roster=ROSTER_FILE,
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
        metrics=[EVAL["table_psnr"], EVAL["table_ssim"], "mae"],
    shell:
        "python -m mrbench.cli report boxplot --tidy {input.tidy:q} --dataset {wildcards.dataset:q}"
        " --protocol {params.protocol:q} --metrics {params.metrics:q} --roster {input.roster:q}"
        " --out {params.prefix:q} > {log:q} 2>&1"


rule figure_training_curves:
    input:
        expand(MODEL, method=METHODS, seed=FIRST_SEED, allow_missing=True),
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
        runs=curve_runs,
        title=curve_title,
    shell:
        "python -m mrbench.cli report curves --run {params.runs:q} --title {params.title:q}"
        " --out {params.prefix:q} > {log:q} 2>&1"


use rule figure_training_curves as figure_training_curves_pair with:
    input:
        expand(PAIR_MODEL, method=METHODS, seed=FIRST_SEED, allow_missing=True),
    output:
        **figure_outputs(
            "training_curves_{dataset}_{pair_tag}",
            "training_curves",
            "Training curves",
            {"dataset": "{dataset}", "pair": "{pair_tag}"},
        ),
    log:
        f"{RESULTS}/logs/report/training_curves_{{dataset}}_{{pair_tag}}.log",


rule figure_content_maps:
    input:
        model=fill(MODEL, seed=FIRST_SEED),
        store=TEST_STORE,
    output:
        report(
            CONTENT_MAPS,
            caption="../report/content_maps.rst",
            category="Figures",
            subcategory="Content maps",
            labels={
                "dataset": "{dataset}",
                "method": "{method}",
                "figure": "content maps (Fig. 3)",
            },
        ),
    log:
        f"{RESULTS}/logs/report/content_maps/{{dataset}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/content_maps/{{dataset}}/{{method}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python -m mrbench.cli content-maps --model {input.model:q} --store {input.store:q}"
        " --out {output:q} > {log:q} 2>&1"


use rule figure_content_maps as figure_content_maps_pair with:
    input:
        model=fill(PAIR_MODEL, seed=FIRST_SEED),
        store=TEST_STORE,
    output:
        report(
            PAIR_CONTENT_MAPS,
            caption="../report/content_maps.rst",
            category="Figures",
            subcategory="Content maps",
            labels={
                "dataset": "{dataset}",
                "method": "{method}",
                "pair": "{pair_tag}",
                "figure": "content maps (Fig. 3)",
            },
        ),
    log:
        f"{RESULTS}/logs/report/content_maps/{{dataset}}/{{method}}_{{pair_tag}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/report/content_maps/{{dataset}}/{{method}}_{{pair_tag}}.tsv"


rule recipes_table:
    input:
        all_models(),
    output:
        **table_outputs("recipes", "recipes", "Training recipes"),
    log:
        f"{RESULTS}/logs/report/recipes.log",
    conda:
        CONDA_ENV
    params:
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
    shell:
        "python -m mrbench.cli report recipes --model {input:q} --out {params.prefix:q} > {log:q} 2>&1"

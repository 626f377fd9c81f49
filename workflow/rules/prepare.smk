rule frames:
    """Canonical, 0-based, contiguous frame names and one 0/1 label array per test video (from the
    dataset's `label_source`)."""
    input:
        "resources/{dataset}/source",
    output:
        directory("resources/{dataset}/frames"),
    log:
        "logs/{dataset}/frames.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        layout=lambda wc: config["datasets"][wc.dataset]["layout"],
        options=get_layout_options,
        archives=config.get("archives", {}),
        label_source=lambda wc: config["datasets"][wc.dataset].get("label_source", "archive"),
    script:
        "../scripts/frames.py"


rule resize:
    """Decode every frame once into per-video uint8 arrays at the preset's size and channels, resized
    with the preset's `resize_filter`."""
    input:
        "resources/{dataset}/frames",
    output:
        directory("resources/{dataset}/{preset}/arrays"),
    log:
        "logs/{dataset}/{preset}/resize.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        size=lambda wc: config["presets"][wc.preset]["frame_size"],
        channels=lambda wc: config["presets"][wc.preset]["channels"],
        resize_filter=lambda wc: config["presets"][wc.preset].get("resize_filter", "pillow_bicubic_aa"),
    script:
        "../scripts/resize.py"


rule index:
    """The cuboid index: (video, start frame) of every train and test clip."""
    input:
        "resources/{dataset}/{preset}/arrays",
    output:
        "resources/{dataset}/{preset}/clips.npz",
    log:
        "logs/{dataset}/{preset}/index.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        clip_length=lambda wc: config["presets"][wc.preset]["clip_length"],
        train_stride=lambda wc: config["presets"][wc.preset]["train_stride"],
        test_stride=lambda wc: config["presets"][wc.preset]["test_stride"],
    script:
        "../scripts/index.py"


rule flow:
    """Dense optical flow between consecutive frames of every video at the preset's size
    (AMMC-Net), computed once and read memory-mapped by every variant and seed."""
    input:
        "resources/{dataset}/{preset}/arrays",
    output:
        directory("resources/{dataset}/{preset}/flow"),
    log:
        "logs/{dataset}/{preset}/flow.log",
    conda:
        "../../envs/vadbench.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        method=lambda wc: config["presets"][wc.preset]["flow"]["method"],
    script:
        "../scripts/flow.py"

"""The Streamlit page of ``vadbench app``: pick a trained model, upload a video, press Detect, see
the annotated video, the score curve, the boxes and the threshold, download the viewer page.

Streamlit runs this script top to bottom on every interaction; what must survive a rerun (the
model list, the last detection) is kept in ``st.session_state``, one per browser session. The
store is the one in ``MLFLOW_TRACKING_URI``, which :func:`vadbench.app.launch` sets. All logic
lives in :mod:`vadbench.app`; this file only lays it out.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from vadbench.app import LOCAL_HOSTS, MAX_UPLOAD_MB, list_models, model_label, run_detection
from vadbench.detect import VIDEO_SUFFIXES
from vadbench.errors import ConfigError, DatasetError
from vadbench.tracking import ENV_URI, redact_uri

BOX_COLUMNS = ["frame", "x0", "y0", "x1", "y1", "area", "score"]

st.set_page_config(page_title="vadbench: detect anomalies", layout="wide")
st.title("vadbench: anomaly detection on your video")

address = st.get_option("server.address")
if address in LOCAL_HOSTS:
    st.caption(f"Listening on {address} only: no other machine can reach this app. Uploads are deleted after use.")
elif address:
    st.warning(f"Listening on {address}: any machine that reaches this port can upload video and run models.")
else:
    st.warning("No server address set, so Streamlit listens on every interface; start the app with `vadbench app`.")

uri = os.environ.get(ENV_URI)
if not uri:
    st.error(f"{ENV_URI} is not set: start the app with `vadbench app --tracking-uri sqlite:///results/mlflow.db`.")
    st.stop()

if st.button("Reload models") or "models" not in st.session_state:
    try:
        st.session_state["models"] = list_models(uri)
    except ConfigError as err:
        st.error(str(err))
        st.stop()
models = {m["run_id"]: m for m in st.session_state["models"]}
if not models:
    st.info(
        f"No trained model in {redact_uri(uri)}. The workflow's maps rule logs each model to its MLflow run "
        "(localization.enabled: true, mlflow.log_model: true); run it, then press Reload models."
    )
    st.stop()

run_id = st.selectbox(
    "Model (dataset / variant / seed / AUC)",
    list(models),
    format_func=lambda r: model_label(models[r]),
    key="model",
)
upload = st.file_uploader(
    "Video",
    type=[s.lstrip(".") for s in VIDEO_SUFFIXES],
    max_upload_size=MAX_UPLOAD_MB,
    key="upload",
)

if st.button("Detect", type="primary", disabled=upload is None):
    st.session_state.pop("detection", None)
    upload.seek(0)
    with st.spinner(f"Scoring {upload.name} with {model_label(models[run_id])} ..."):
        try:
            st.session_state["detection"] = run_detection(
                models[run_id]["uri"],
                upload,
                upload.name,
                max_bytes=MAX_UPLOAD_MB * 2**20,
                threads=max(1, min(4, os.cpu_count() or 1)),
            )
        except (DatasetError, ConfigError) as err:
            st.error(str(err))

found = st.session_state.get("detection")
if found is not None:
    record = found.record
    st.subheader(f"{found.name}: {record['variant']}")
    frames, boxes, threshold = st.columns(3)
    frames.metric("Frames", record["frames"])
    boxes.metric("Boxes", record["boxes"])
    threshold.metric("Box threshold", f"{record['threshold']:.4g}")
    st.caption(f"Threshold origin: {record['threshold_origin']}.")
    video, curve = st.columns([3, 2])
    video.video(found.video, format="video/mp4")
    curve.markdown("**Anomaly score per frame** (the protocol's score, relative to this video: min-max over it)")
    curve.line_chart(pd.DataFrame(found.scores).set_index("frame")[["score"]], x_label="frame", y_label="score")
    st.markdown(f"**Boxes** (pixels of the model's {record['frame_size'][1]}x{record['frame_size'][0]} frame)")
    st.dataframe(pd.DataFrame(found.boxes, columns=BOX_COLUMNS), hide_index=True)
    st.download_button(
        "Download the viewer page (zip)",
        found.viewer_zip,
        file_name=f"{found.name}-viewer.zip",
        mime="application/zip",
    )

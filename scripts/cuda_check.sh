#!/usr/bin/env bash
# One check of the CUDA paths, sized to finish within 8 minutes on one GPU, ending in one summary table:
#   1-4. a few training steps of both stages, plain (model=quickstart) and refining (model=quickstart_refine), with
#        AMP (precision=auto: bf16/fp16 autocast on CUDA);
#   5.   a one-process torchrun with the NCCL backend (DDP around the refining model, on steps that refine no patch);
#   6.   refine inference (python -m bgmatting.infer --mode refine) on a generated 1080p hand-held clip: frames/s;
#   7.   the bench refine suite (network time per 1080p and 4K frame: refine vs native full frame vs 512 crop);
#   8.   the bench model suite at 512^2 batch 8 (every CUDA mode; torch.compile for inference only).
#
#   scripts/cuda_check.sh [--dry] [--out DIR]
#
# --dry (or BGM_CUDA_CHECK_DRY=1) runs the same steps tiny on the CPU (gloo, fp32, model=tiny / tiny_refine,
# 64x96 clip, no peak measurement), several at a time: the test suite runs it (tests/test_cuda_check.py). Outputs, logs and summary.md go to --out
# (default: a new folder under /tmp). PYTHON picks the interpreter (default: python); the sources of this
# checkout come first on PYTHONPATH. Exit status 1 when a step failed (the table says which; its log is in DIR).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY="${BGM_CUDA_CHECK_DRY:-0}"
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "error: unknown option $1 (use --dry, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
OUT="${OUT:-$(mktemp -d /tmp/bgm-cuda-check.XXXXXX)}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export BGMATTING_CACHE="${BGMATTING_CACHE:-$OUT/cache}"
unset BGM_RUN_STAMP

if [ "$DRY" = "1" ]; then
  export OMP_NUM_THREADS=1
  DEVICE=cpu; PRECISION=fp32; BACKEND=gloo; PLAIN=tiny; REFINE=tiny_refine; STEPS=2
  CLIP="64 96 3"; FRAMES=32x48,64x96; PLAIN_CROP=32; REFINE_CROP=32
  COMMON=(logging=quiet trainer.batch_size=2 cpu_threads=1)
  DATA_adobe=(data.generation.n_fg=3 data.generation.n_bg=4 data.generation.size=48 data.generation.n_test_fg=1
              data.generation.n_test_bg=2 data.train.samples_per_fg=2)
  DATA_real=(data.generation.n_clips=2 data.generation.n_frames=6 data.generation.frame_size=[48,64]
             data.generation.n_targets=2 data.train.motion_offsets=[-2,-1,1,2] data.val.n_clips=1 data.val.n_targets=2)
  BENCH=(--model-config tiny --sizes 32 --batches 2 --modes fp32 --kinds infer --repeats 1 --warmup 0 --no-memory)
  REFINE_BENCH=(--refine-model tiny_refine --plain-model tiny)
  PEAK=""  # no ratios to peak: the peak measurement alone would double the dry form's time
  ALIGN=(--no-align)  # a 64x96 clip has too few features for AKAZE
else
  DEVICE=cuda; PRECISION=auto; BACKEND=nccl; PLAIN=quickstart; REFINE=quickstart_refine; STEPS=20
  CLIP="1080 1920 24"; FRAMES=1080x1920,2160x3840; PLAIN_CROP=96; REFINE_CROP=192
  COMMON=(logging=quiet trainer.batch_size=8)
  DATA_adobe=(); DATA_real=()
  BENCH=(--sizes 512 --batches 8 --compile-kinds infer --repeats 3 --warmup 1)
  REFINE_BENCH=()
  PEAK="peak,"
  ALIGN=()
fi
TRAIN=(device="$DEVICE" precision="$PRECISION" trainer.max_steps="$STEPS" trainer.validate_every=0
       evaluation.enabled=false "${COMMON[@]}")
ROWS="$OUT/rows.tsv"
: > "$ROWS"
COUNT=0

# step NAME RESULT COMMAND...: run COMMAND (output in NAME.log) and add a row "index, name, exit status, ms, RESULT"
# (the file or folder the summary reads). In the dry form the steps of a group run at once in the background (their
# CPU time is mostly imports, and they do not depend on each other); `join` waits for the group.
step() {
  local name="$1" result="$2" index=$((COUNT += 1)); shift 2
  echo "== $name" >&2
  if [ "$DRY" = "1" ]; then _step "$index" "$name" "$result" "$@" & else _step "$index" "$name" "$result" "$@"; fi
}
_step() {
  local index="$1" name="$2" result="$3" start rc; shift 3
  start=$(date +%s%N)
  "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || echo "   $name failed (exit $rc), see $OUT/$name.log" >&2
  printf '%s\t%s\t%s\t%s\t%s\n' "$index" "$name" "$rc" "$(( ($(date +%s%N) - start) / 1000000 ))" "$result" >> "$ROWS"
}
join() { wait; }
run_train() {  # run_train STAGE MODEL CROP RUNS-FOLDER [overrides...]
  local stage="$1" model="$2" crop="$3" runs="$4"; shift 4
  local data=("${DATA_adobe[@]}") size=(data.train.augment.output_size="$crop")
  if [ "$stage" = real ]; then data=("${DATA_real[@]}"); size=(data.train.size="$crop" data.val.size="$crop"); fi
  "$PY" -m bgmatting.train stage="$stage" model="$model" outputs_root="$runs" "${TRAIN[@]}" "${data[@]}" "${size[@]}" "$@"
}
newest_checkpoint() { ls "$1"/*/checkpoints/step_*.pt 2>/dev/null | sort | tail -n 1; }
read -r clip_h clip_w clip_n <<< "$CLIP"

step train_adobe_plain "$OUT/runs/plain/adobe" run_train adobe "$PLAIN" "$PLAIN_CROP" "$OUT/runs/plain"
step train_adobe_refine "$OUT/runs/refine/adobe" run_train adobe "$REFINE" "$REFINE_CROP" "$OUT/runs/refine"
step make_clip "$OUT/clip/clip.avi" "$PY" -c "import sys; from pathlib import Path
from bgmatting.benchmarks.video import write_handheld_clip
folder = Path(sys.argv[1]); folder.mkdir(parents=True, exist_ok=True)
write_handheld_clip(folder, int(sys.argv[4]), int(sys.argv[2]), int(sys.argv[3]))" "$OUT/clip" "$clip_h" "$clip_w" "$clip_n"
step bench_model "$OUT/bench_model.json" "$PY" -m bgmatting.bench --suite model --device "$DEVICE" "${BENCH[@]}" \
  --json "$OUT/bench_model.json" --markdown "$OUT/bench_model.md"
join
step train_real_plain "$OUT/runs/plain/real" run_train real "$PLAIN" "$PLAIN_CROP" "$OUT/runs/plain"
step train_real_refine "$OUT/runs/refine/real" run_train real "$REFINE" "$REFINE_CROP" "$OUT/runs/refine"
# DDP around the refining model in mode thresholding above every error: no patch is refined, the refiner's weights
# get zero gradients from an empty batch of patches, and DDP (without find_unused_parameters) must still reduce
step torchrun_"$BACKEND" "$OUT/runs/ddp/adobe" "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 \
  -m bgmatting.train stage=adobe model="$REFINE" outputs_root="$OUT/runs/ddp" distributed.backend="$BACKEND" \
  model.refine.refine_mode=thresholding model.refine.refine_threshold=1.0 \
  "${TRAIN[@]}" "${DATA_adobe[@]}" data.train.augment.output_size="$REFINE_CROP"
step infer_refine "$OUT/infer/summary.json" "$PY" -m bgmatting.infer --input "$OUT/clip/clip.avi" \
  --background "$OUT/clip/plate.png" --checkpoint "$(newest_checkpoint "$OUT/runs/refine/adobe")" \
  --output "$OUT/infer" --mode refine --device "$DEVICE" --precision "$PRECISION" --batch-size 4 --no-progress \
  "${ALIGN[@]}"
step bench_refine "$OUT/bench_refine.json" "$PY" -m bgmatting.bench --suite "${PEAK}refine" --device "$DEVICE" \
  --frame-sizes "$FRAMES" --repeats 2 "${REFINE_BENCH[@]}" --json "$OUT/bench_refine.json" \
  --markdown "$OUT/bench_refine.md"
join

"$PY" - "$ROWS" "$OUT/summary.md" <<'PYTHON'
"""The summary table: one row per step with its status, seconds and headline numbers (exit 1 if any failed)."""
import json, sys
from pathlib import Path

def newest_summary(folder):
    runs = sorted(p for p in Path(folder).glob("*/summary.json"))
    return json.loads(runs[-1].read_text()) if runs else None

def detail(name, result):
    path = Path(result)
    if name.startswith(("train", "torchrun")):
        s = newest_summary(path)
        if not s:
            return "no summary.json"
        return (f"{s['steps']} steps, {s['train_samples_per_s']:.1f} samples/s, {s['precision']} on {s['device']}, "
                f"{s['world_size']} process(es), last total loss {s['last_losses'].get('loss/generator_total', float('nan')):.3g}")
    if name == "infer_refine" and path.is_file():
        s = json.loads(path.read_text())
        matting = s["frames"] / s["matting_seconds"] if s["matting_seconds"] else float("nan")
        return (f"{s['frames']} frames: {s['frames_per_second']:.2f} frames/s end to end, {matting:.2f} frames/s "
                f"matting ({s['precision']} on {s['device']})")
    if name.startswith("bench") and path.is_file():
        report = json.loads(path.read_text())
        if report.get("errors"):
            return "errors: " + "; ".join(f"{k}: {v}" for k, v in report["errors"].items())[:300]
        if name == "bench_refine":
            return " ".join(f"{f['width']}x{f['height']}: refine {f['methods']['refine']['seconds'] * 1e3:.1f} ms "
                            f"({1 / f['methods']['refine']['seconds']:.1f} frames/s), {f['speedup_vs_native']:.1f}x "
                            f"native, {f['speedup_vs_original']:.1f}x 512 crop;" for f in report["refine"]["frames"])
        cases = report["model"]["cases"]
        return " ".join(f"{c['kind']} {c['size']}² b{c['batch']}: " + ", ".join(
            f"{m} {v['median_s'] * 1e3:.0f} ms" for m, v in c["modes"].items() if v.get("status") == "ok") + ";"
            for c in cases)
    return "ok" if path.exists() else "missing output"

lines = ["| step | status | seconds | result |", "|---|---|---|---|"]
rows = sorted((row.split("\t") for row in Path(sys.argv[1]).read_text().splitlines()), key=lambda r: int(r[0]))
for _, name, rc, seconds, result in rows:
    status = "ok" if rc == "0" else f"FAILED ({rc})"
    try:
        text = detail(name, result) if rc == "0" else f"see {name}.log"
    except (KeyError, ValueError, IndexError, TypeError) as error:
        status, text = "FAILED (summary)", f"{type(error).__name__}: {error}"
    lines.append(f"| {name} | {status} | {int(seconds) / 1000:.1f} | {text} |")
table = "\n".join(lines)
Path(sys.argv[2]).write_text(table + "\n")
print(table)
sys.exit(0 if all("| ok |" in line for line in lines[2:]) else 1)
PYTHON
status=$?
echo "outputs and logs: $OUT" >&2
exit $status

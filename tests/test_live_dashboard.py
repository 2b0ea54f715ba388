"""LiveDashboard driven through its sink methods: history, throttled redraws, what the plots contain, status."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import ipywidgets as widgets
import numpy as np
import pytest

import lorakit.widgets.live_dashboard as live
from lorakit.training.events import TrainSummary
from lorakit.widgets.dashboard_views import DashboardView
from lorakit.widgets.live_dashboard import LiveDashboard, describe_summary, format_duration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GIB = 2**30


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(step: int, **extra) -> dict:
    base = {"step": step, "epoch": step / 100, "loss": 3.0 / step, "learning_rate": 1e-4 * step,
            "tokens_per_s": 1000.0 + step, "tokens_seen": 64 * step, "elapsed_s": 0.5 * step,
            "eta_s": 0.5 * (100 - step), "mem_allocated_bytes": None, "mem_reserved_bytes": None,
            "mem_peak_bytes": None, "rss_bytes": GIB + step * 2**20}
    return {**base, **extra}


def info(**extra) -> dict:
    return {"total_steps": 100, "output_dir": "/tmp/run", "device": "cpu", "precision": "fp32",
            "quantization": "none", "trainable_params": 4_000, "total_params": 1_000_000,
            "predicted_peak_bytes": 2 * GIB, "config": {}, **extra}


def summary(tmp_path, status="completed", with_adapter=True, steps=100) -> TrainSummary:
    adapter = tmp_path / "adapter"
    if with_adapter:
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    return TrainSummary(status=status, message="", steps_done=steps, total_steps=100, final_loss=0.03,
                        output_dir=str(tmp_path), adapter_dir=str(adapter), metrics_path=str(tmp_path / "m"))


def frames(dash: LiveDashboard) -> None:
    """Do what the render thread does, here (dashboards built with background=False)."""
    dash.tick()


def test_one_frame_shows_progress_status_and_plots_of_the_same_step():
    """The plots never lag the status line: a frame updates all three from one snapshot."""
    dash = LiveDashboard(min_interval_s=0.0, background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info())
    for step in range(1, 31):
        dash.on_log(record(step))
    dash.on_eval({"step": 30, "eval_loss": 0.5})
    assert [r["step"] for r in dash.history] == list(range(1, 31))
    assert dash.eval_history == [{"step": 30, "eval_loss": 0.5}]
    assert dash.progress.value == 0 and dash.redraw_count == 0  # sinks only store: nothing drawn yet
    frames(dash)
    assert dash.progress.max == 100 and dash.progress.value == 30
    assert "ETA 0:35" in dash.progress_label.value  # eta_s = 0.5 * 70
    assert "step 30, loss 0.1000" in dash.status.value and "eval loss 0.5000" in dash.status.value
    loss_ax, lr_ax = dash._figure[1][:2]
    assert loss_ax.lines[0].get_xdata()[-1] == lr_ax.lines[0].get_xdata()[-1] == 30
    assert "4,000 of 1,000,000 parameters trainable (0.40 %)" in dash.setup.value


def test_frames_are_throttled_by_the_clock(monkeypatch):
    monkeypatch.setattr(live, "figure_to_png", lambda fig: PNG_SIGNATURE)  # count draws; skip rendering
    clock = FakeClock()
    # draws take 0 fake seconds: the budget never binds, min_interval_s does
    dash = LiveDashboard(min_interval_s=0.5, clock=clock, cost_clock=clock, background=False,
                         first_draw_estimate_s=0.0)
    dash.on_train_start(info())
    frames(dash)
    assert dash.redraw_count == 0  # nothing logged yet: nothing to draw
    waits = []
    for step in range(1, 1001):
        clock.now = step * 0.01  # 1000 logs over 10 s
        dash.on_log(record(step % 99 + 1))
        waits.append(dash.tick())
    # the first record at once (t = 0.01 s), then one frame per 0.5 s; between frames tick() says how long
    assert dash.redraw_count == 20
    assert all(0 < w <= 0.5 for w in waits if w is not None)
    dash.on_train_end(summary_obj := TrainSummary("completed", "", 100, 100, 0.1, "/x", None, "/x/m"))
    assert dash.tick() == live.STOP
    assert dash.redraw_count == 21  # the final frame always happens
    assert dash.summary is summary_obj


def test_frames_cost_at_most_max_overhead_of_the_run(monkeypatch):
    clock = FakeClock()
    real_png = live.figure_to_png
    draw_times = []

    def slow_png(fig):  # pretend each draw costs 0.1 s
        draw_times.append(clock.now)
        clock.now += 0.1
        return real_png(fig)

    monkeypatch.setattr(live, "figure_to_png", slow_png)
    dash = LiveDashboard(min_interval_s=0.5, max_overhead=0.02, clock=clock, cost_clock=clock, background=False)
    dash.on_train_start(info())
    for step in range(1, 1001):
        clock.now += 0.02  # 1000 logs over 20 s of training
        dash.on_log(record(step % 99 + 1))
        dash.tick()
    # The figure is built and rendered once at the run's start (not a frame; its cost is the estimate).
    # 0.1 s per draw at a 2 % budget: the first frame after 5 s (not at once: a short run pays nothing), then
    # one per 5 s; drawing stays under 2 % of the time at every frame
    frames_at = draw_times[1:]
    assert draw_times[0] < 0.1 and len(frames_at) == dash.redraw_count == 4
    assert frames_at[0] >= 5.0 and min(np.diff(frames_at)) >= 4.9
    assert all(0.1 * (i + 1) <= 0.02 * (t + 0.1) + 1e-9 for i, t in enumerate(frames_at))


def slow_dashboard(monkeypatch) -> tuple[FakeClock, LiveDashboard]:
    """A dashboard on a fake clock where every draw takes 1 s: the budget holds its frames far apart."""
    clock = FakeClock()

    def slow_png(fig):
        clock.now += 1.0
        return PNG_SIGNATURE

    monkeypatch.setattr(live, "figure_to_png", slow_png)
    return clock, LiveDashboard(clock=clock, cost_clock=clock, background=False)


def test_when_the_budget_holds_plots_back_the_text_goes_ahead_and_says_so(monkeypatch):
    """A machine so busy that a draw takes 1 s: frames ~67 s apart at 1.5 %; meanwhile progress and status
    follow the run every text_interval_s and name the step the plots show."""
    clock, dash = slow_dashboard(monkeypatch)
    dash.on_train_start(info(total_steps=200))
    dash.tick()  # the figure is built and rendered once: 1 s, the estimate for the first frame
    seen = []
    for step in range(1, 201):
        clock.now += 0.5
        dash.on_log(record(step))
        dash.tick()
        seen.append((step, dash.progress.value, dash.redraw_count, dash.status.value))
    before = [(step, shown, text) for step, shown, frames, text in seen if frames == 0]
    # at most text_interval_s (2 s = 4 steps) behind while the frame is far, max_plot_lag_s + 2 s near it
    assert before and all(step - shown <= 4 for step, shown, _ in before if step * 0.5 < 66.7 - 10)
    assert all(step - shown <= (10 + 2) / 0.5 for step, shown, _ in before)
    assert all("Plots: none yet" in text for _, shown, text in before if shown)
    first = next(entry for entry in seen if entry[2] == 1)
    assert first[0] * 0.5 >= 1.0 / 0.015 - 1  # the first frame waited for the budget (~67 s)
    plotted = dash._shown["data"][0][-1]["step"]
    assert dash.redraw_count == 1 and f"Plots: step {plotted}" in dash.status.value
    assert dash.progress.value >= 200 - 4


def _train_in_a_thread(dash: LiveDashboard, steps: int, pause_s: float = 0.0,
                       before_end: Callable[[], None] = lambda: None) -> bool:
    """Feed the dashboard as the loop does, from a thread of its own; True when every call returned."""

    def body():
        dash.on_phase("loading", "loading the model")
        dash.on_train_start(info(total_steps=steps))
        dash.on_phase("evaluating", "evaluating the loss on 45 held-out examples")
        dash.on_eval({"step": 0, "eval_loss": 3.0})
        dash.on_phase("training", f"training: step 1 of {steps}")
        for step in range(1, steps + 1):
            time.sleep(pause_s)
            dash.on_log(record(step))
        before_end()
        dash.on_train_end(TrainSummary("completed", "", steps, steps, 0.1, "/x", None, "/x/m"))

    thread = threading.Thread(target=body, name="fake-training")
    thread.start()
    thread.join(120)
    return not thread.is_alive()


def test_the_training_thread_never_draws_and_never_waits_for_a_draw(monkeypatch):
    drawn_by = []
    real_draw = live.draw_dashboard_records
    steps_done = threading.Event()

    def held_draw(*args, **kwargs):  # record who draws; every draw but the final one waits for the last step
        drawn_by.append(threading.current_thread().name)
        steps_done.wait(120)
        return real_draw(*args, **kwargs)

    monkeypatch.setattr(live, "draw_dashboard_records", held_draw)
    dash = LiveDashboard(min_interval_s=0.0, max_overhead=1.0)  # draw whenever it can: the worst case
    # No clock: if any on_log call waited for a draw, the training thread would hang on the held draw and
    # never reach steps_done.set(); only on_train_end may wait (for the final frame).
    assert _train_in_a_thread(dash, steps=40, pause_s=0.005, before_end=steps_done.set)
    assert drawn_by and set(drawn_by) == {live.RENDER_THREAD} == dash.draw_threads
    # on_train_end returns once the final frame is drawn: the picture is in place when train() returns
    assert dash.final_png() is not None and dash.plot.value == dash.final_png()
    assert dash.status.value.startswith("Completed after 40/40 steps") and dash.progress.value == 40
    assert dash._figure[1][0].lines[0].get_xdata()[-1] == 40
    assert dash._worker.join(5)  # the render thread ends with the run


def test_records_wake_the_render_thread_only_when_a_frame_is_due():
    """A thread switch per record can stall the training thread on a busy machine: one per frame at most."""
    dash = LiveDashboard(min_interval_s=30.0, first_draw_estimate_s=0.0)
    wakes = []
    real_wake = dash._worker.wake
    dash._worker.wake = lambda: (wakes.append(time.monotonic()), real_wake())[1]
    dash.on_train_start(info(total_steps=200))
    for step in range(1, 201):
        dash.on_log(record(step % 99 + 1))
        time.sleep(0.002)
    assert len(wakes) <= 3  # the start, the first record (a frame is allowed at once), perhaps one race
    dash.on_train_end(TrainSummary("completed", "", 200, 200, 0.1, "/x", None, "/x/m"))
    assert dash.redraw_count == 2 and dash.progress.value == dash.summary.steps_done  # first frame + final


def test_phases_say_what_the_run_is_doing():
    dash = LiveDashboard(min_interval_s=0.0, background=False, first_draw_estimate_s=0.0)
    dash.on_phase("loading", "loading embedded and tokenizing the data")
    frames(dash)
    assert dash.status.value == "Loading embedded and tokenizing the data\u2026"
    dash.on_train_start(info())
    dash.on_phase("evaluating", "evaluating the loss on 45 held-out examples")
    frames(dash)
    assert dash.status.value == "Evaluating the loss on 45 held-out examples\u2026"
    dash.on_phase("training", "training: step 1 of 100")
    frames(dash)
    assert dash.status.value == "Training: step 1 of 100\u2026"
    dash.on_log(record(1))
    frames(dash)
    assert dash.status.value.startswith("Running: step 1, loss 3.0000")
    dash.on_phase("evaluating", "evaluating the loss on 45 held-out examples")
    frames(dash)
    assert dash.status.value.startswith("Evaluating")  # between steps, what it is busy with
    dash.on_phase("training", "training: step 2 of 100")
    frames(dash)
    assert dash.status.value.startswith("Running: step 1, loss")  # back to the shown frame's numbers


def test_the_plot_is_hidden_until_it_has_a_picture(tmp_path):
    """No broken-image icon: before the first run, while a run has logged nothing, and after a reset."""
    dash = LiveDashboard(min_interval_s=0.0, background=False, first_draw_estimate_s=0.0)
    assert dash.plot.layout.display == "none" and not dash.plot.value
    dash.on_train_start(info())
    frames(dash)
    assert dash.plot.layout.display == "none"
    dash.on_log(record(1))
    frames(dash)
    assert dash.plot.layout.display is None and bytes(dash.plot.value).startswith(PNG_SIGNATURE)
    dash.reset("Starting&hellip;")
    assert dash.plot.layout.display == "none" and dash.status.value == "Starting&hellip;"
    dash.on_train_start(info())
    dash.on_train_end(summary(tmp_path, status="error", steps=0))  # failed before logging anything
    frames(dash)
    assert dash.plot.layout.display == "none" and dash.final_png() is None


def test_a_resumed_run_shows_its_earlier_steps(tmp_path):
    lines = [{"kind": "train", **record(1)}, {"kind": "train", **record(2)}, {"kind": "eval", "step": 2,
             "eval_loss": 0.9}, {"kind": "train", **record(3)}]  # step 3 came after the checkpoint
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    dash = LiveDashboard(background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info(start_step=2, output_dir=str(tmp_path)))
    dash.on_log(record(3))
    frames(dash)
    assert [r["step"] for r in dash.history] == [1, 2, 3] and dash.eval_history == [{"step": 2, "eval_loss": 0.9}]
    assert list(dash._figure[1][0].lines[0].get_xdata()) == [1, 2, 3]


def test_setup_line_shows_the_choices_the_run_made():
    dash = LiveDashboard(background=False, first_draw_estimate_s=0.0)
    choices = {"gradient_checkpointing": {"value": True, "reason": "auto: on for a quantized base (nf4)"},
               "loss_kernel": {"value": "fused", "reason": "auto: fused wherever it is supported"},
               "compile": {"value": False, "reason": "set in the config"}}
    dash.on_train_start(info(quantization="nf4", choices=choices, warnings=["bf16 is slow here"]))
    frames(dash)
    text = dash.setup.value
    assert "gradient checkpointing: on (auto: on for a quantized base (nf4))" in text
    assert "loss kernel: fused (auto: fused wherever it is supported)" in text
    assert "compile: off (set in the config)" in text
    assert "quantization nf4" in text and "Warning: bf16 is slow here" in text


def test_plot_shows_the_history_in_the_right_units():
    dash = LiveDashboard(background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info())
    for step in range(1, 11):
        dash.on_log(record(step))
    dash.on_eval({"step": 10, "eval_loss": 0.7})
    png = dash.redraw()
    assert png.startswith(PNG_SIGNATURE) and dash.plot.value == png
    loss_ax, lr_ax, speed_ax, mem_ax = dash._figure[1]
    train_line, eval_line = loss_ax.lines
    np.testing.assert_allclose(train_line.get_xdata(), range(1, 11))
    np.testing.assert_allclose(train_line.get_ydata(), [3.0 / s for s in range(1, 11)])
    np.testing.assert_allclose(eval_line.get_ydata(), [0.7])
    np.testing.assert_allclose(lr_ax.lines[0].get_ydata(), [1e-4 * s for s in range(1, 11)])
    np.testing.assert_allclose(speed_ax.lines[0].get_ydata(), [1000.0 + s for s in range(1, 11)])
    # on the CPU only RSS is measured (GPU series are None) and the axis is in GiB since the peak is 2 GiB
    labels = [line.get_label() for line in mem_ax.lines]
    assert labels == ["process RSS", "predicted peak"]
    np.testing.assert_allclose(mem_ax.lines[0].get_ydata(), [1 + s / 1024 for s in range(1, 11)])
    np.testing.assert_allclose(mem_ax.lines[1].get_ydata(), [2.0, 2.0])
    assert mem_ax.get_title() == "memory (GiB)"


def test_gpu_memory_series_are_drawn_when_measured():
    dash = LiveDashboard(background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info(predicted_peak_bytes=None))
    dash.on_log(record(1, mem_allocated_bytes=100 * 2**20, mem_reserved_bytes=200 * 2**20,
                       mem_peak_bytes=150 * 2**20, rss_bytes=None))
    dash.redraw()
    mem_ax = dash._figure[1][3]
    assert [line.get_label() for line in mem_ax.lines] == ["GPU allocated", "GPU reserved", "GPU peak"]
    assert [line.get_ydata()[0] for line in mem_ax.lines] == [100, 200, 150]  # MiB
    assert mem_ax.get_title() == "memory (MiB)"


def test_on_a_gpu_the_predicted_peak_line_gives_the_prediction_error():
    """allocated, reserved and peak against the planner's line, whose label gives the error against the peak
    measured so far (the run's final frame: at the end of the run)."""
    dash = LiveDashboard(background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info(predicted_peak_bytes=160 * 2**20))
    for step, peak in ((1, 140), (2, 150)):
        dash.on_log(record(step, mem_allocated_bytes=100 * 2**20, mem_reserved_bytes=200 * 2**20,
                           mem_peak_bytes=peak * 2**20, rss_bytes=None))
    dash.redraw()
    labels = [line.get_label() for line in dash._figure[1][3].lines]
    assert labels == ["GPU allocated", "GPU reserved", "GPU peak", "predicted 160.00 MiB; measured 150.00 (+6.7 %)"]


def test_a_new_run_starts_a_fresh_history(tmp_path):
    dash = LiveDashboard(background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info())
    dash.on_log(record(1))
    dash.on_train_end(summary(tmp_path))
    frames(dash)
    assert dash.final_png() is not None
    dash.on_train_start(info(total_steps=7))
    frames(dash)
    assert dash.history == [] and dash.summary is None and dash.final_png() is None
    assert dash.progress.max == 7 and dash.plot.layout.display == "none"


def test_describe_summary_mentions_the_adapter_only_when_it_is_on_disk(tmp_path):
    saved = describe_summary(summary(tmp_path))
    assert saved.startswith("Completed after 100/100 steps, final loss 0.0300.")
    assert "adapter saved to" in saved.lower() and str(tmp_path / "adapter") in saved
    missing = describe_summary(summary(tmp_path / "other", status="stopped", with_adapter=False, steps=3))
    assert missing.startswith("Stopped after 3/100 steps") and "adapter saved" not in missing.lower()


def test_describe_summary_says_where_the_time_went(tmp_path):
    """Training (with the tokens/s computed from it), evaluation, saving and the whole, each named."""
    import dataclasses

    timed = dataclasses.replace(summary(tmp_path), train_s=55.24, eval_s=30.06, save_s=4.0, elapsed_s=97.3,
                                tokens_per_s=5040 / 55.24)
    assert describe_summary(timed).endswith(
        "Time: training 55.2 s (91 tokens/s), evaluation 30.1 s, saving 4.0 s; 1:37 in all (loading and set-up "
        "are the rest).")
    assert "Time:" not in describe_summary(summary(tmp_path, with_adapter=False))  # no times, none said


def test_end_of_run_status_and_static_content(tmp_path):
    dash = LiveDashboard()
    dash.on_train_start(info())
    dash.on_log(record(1))
    assert dash._static_content() == ({"text/plain": ""}, True)  # placeholder while running
    dash.on_train_end(summary(tmp_path))  # waits for the render thread's final frame
    assert "Adapter saved to" in dash.status.value
    assert dash.progress.bar_style == "success"
    image, raw = dash._static_content()
    assert raw is False and image.data.startswith(PNG_SIGNATURE)


def test_the_final_plots_show_once_the_static_copy_holds_them(tmp_path, monkeypatch):
    """Seen in a browser after Run All of notebook 03: the four plots twice, in the widget and in the static
    output under it. Once the static output holds the final PNG, the live picture hides."""
    updates = []

    class Handle:
        def update(self, content, raw=False):
            updates.append((content, raw))

    monkeypatch.setattr(live, "in_ipython", lambda: True)
    dash = LiveDashboard(background=False, min_interval_s=0, max_overhead=1.0)  # tick() draws, no budget
    dash._static_handle = Handle()  # what display_static_slot() leaves in a kernel
    dash.on_train_start(info())
    dash.on_log(record(1))
    dash.tick()
    assert dash.redraw_count == 1 and dash.plot.layout.display is None  # live while the run goes on
    dash.on_train_end(summary(tmp_path))
    dash.tick()  # the final frame fills the static output
    image, raw = updates[-1]
    assert raw is False and image.data.startswith(PNG_SIGNATURE) and dash.plot.layout.display == "none"
    dash.on_train_start(info())  # a new run: the static copy empties, the live picture returns with a frame
    dash.tick()
    assert updates[-1] == ({"text/plain": ""}, True) and dash.plot.layout.display == "none"
    dash.on_log(record(1))
    dash.redraw()  # what the new run's first frame does
    assert dash.plot.layout.display is None


@pytest.mark.parametrize(("seconds", "text"), [(None, "?"), (-1, "?"), (0, "0:00"), (59.6, "1:00"),
                                               (61, "1:01"), (3725, "1:02:05")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_bad_overhead_budget_is_rejected():
    with pytest.raises(ValueError, match="max_overhead=0"):
        LiveDashboard(max_overhead=0)


def test_dom_classes_for_browser_tests():
    dash = LiveDashboard()
    assert "lorakit-plot" in dash.plot._dom_classes
    assert "lorakit-status" in dash.status._dom_classes
    assert "lorakit-progress" in dash.progress._dom_classes


def test_learning_rate_axis_has_no_offset_label():
    """A nearly constant LR reads as plain values times 1e-4, not as an offset like '1e-9+1.9999e-4'."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lorakit.viz.training import draw_learning_rate

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_learning_rate(ax, [1, 2, 3], [1.9999e-4, 1.99995e-4, 2e-4])
    fig.canvas.draw()
    assert "+" not in ax.yaxis.get_offset_text().get_text()


def test_an_evaluation_before_the_first_step_leaves_the_status_to_the_phase(monkeypatch):
    """The held-out loss before training arrives while the plots lag (no train record yet): the text frame
    keeps the phase on the status line instead of failing on an empty history."""
    clock, dash = slow_dashboard(monkeypatch)
    dash.on_train_start(info(total_steps=20))
    dash.tick()
    dash.on_phase("evaluating", "evaluating the loss on 4 held-out examples")
    clock.now += 30.0
    dash.on_eval({"step": 0, "eval_loss": 2.0})
    dash.tick()
    assert dash.status.value.startswith("Evaluating the loss on 4 held-out examples")


def test_a_failed_frame_mid_run_does_not_cut_the_wait_for_the_final_one(tmp_path):
    dash = LiveDashboard(background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info(total_steps=2))
    dash._on_render_error(RuntimeError("a frame failed"))
    assert not dash._final_done.is_set()
    dash.summary = summary(tmp_path)
    dash._on_render_error(RuntimeError("the final frame failed"))
    assert dash._final_done.is_set()


@pytest.mark.slow
def test_a_real_run_draws_only_on_the_render_thread(tiny_model_dir, tmp_path):
    """lorakit.train() in this (the notebook's) thread, logging every step: it never draws here, and the
    final picture is in place when train() returns."""
    from lorakit.training import TrainConfig, train

    data = [{"prompt": f"What is {a} plus {a}?", "completion": f"{2 * a}"} for a in range(40)]
    dash = LiveDashboard(min_interval_s=0.0)
    config = TrainConfig(model=str(tiny_model_dir), dataset=data, max_steps=12, batch_size=2, max_seq_length=64,
                         logging_steps=1, eval_steps=6, output_dir=str(tmp_path / "run"), device="cpu")
    summary = train(config, sinks=[dash])
    assert summary.status == "completed" and len(dash.history) == 12
    assert dash.draw_threads == {live.RENDER_THREAD} and threading.current_thread().name not in dash.draw_threads
    assert dash._final_png is not None and dash.plot.value == dash._final_png
    assert dash.status.value.startswith("Completed 12 steps")
    assert dash._figure[1][0].lines[0].get_xdata()[-1] == 12


SYNC_CELLS = [
    "from lorakit.training.events import TrainSummary\n"
    "from lorakit.widgets.live_dashboard import LiveDashboard\n"
    "dash = LiveDashboard()\n"
    "dash",
    # what a synchronous lorakit.train(config, sinks=[dash]) does in a cell: the kernel's event loop is blocked
    "import threading\n"
    "dash.on_train_start({'total_steps': 3})\n"
    "for step in (1, 2, 3):\n"
    "    dash.on_log({'step': step, 'loss': 1.0 / step})\n"
    "dash.on_train_end(TrainSummary('completed', '', 3, 3, 1 / 3, '.', None, 'm'))\n"
    "print(sorted(dash.draw_threads), threading.current_thread().name in dash.draw_threads)",
]


@pytest.mark.slow
def test_a_synchronous_run_in_a_cell_leaves_the_static_png(monkeypatch, tmp_path):
    """train() called in the cell itself (no background thread): the render thread still draws, and the
    displayed dashboard's static output holds the final PNG when the cell ends (as nbconvert records it)."""
    import os
    import sys
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in SYNC_CELLS])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    first, second = (cell.outputs for cell in nb.cells)
    assert "application/vnd.jupyter.widget-view+json" in first[0].data
    assert "image/png" in first[1].data  # the static slot, filled by the final frame
    assert second[-1].text.strip() == "['lorakit-dashboard'] False"


class _CountingView(widgets.HTML):
    """A DashboardView that keeps what each frame showed it."""

    def __init__(self):
        super().__init__()
        self.shown, self.resets = [], 0

    def show(self, history, evals, info):
        self.shown.append(([r["step"] for r in history], [r["step"] for r in evals], info.get("total_steps")))
        self.value = f"step {history[-1]['step']}" if history else ""

    def reset(self):
        self.resets += 1


def test_views_under_the_plots_follow_every_frame_and_the_final_one(tmp_path):
    view = _CountingView()
    dash = LiveDashboard(min_interval_s=0.0, background=False, first_draw_estimate_s=0.0, views=[view])
    assert isinstance(view, DashboardView) and dash.children[-1] is view
    dash.on_train_start(info(total_steps=3))
    for step in (1, 2):
        dash.on_log(record(step))
        frames(dash)
    dash.on_eval({"step": 2, "eval_loss": 1.0})
    dash.on_log(record(3))
    dash.on_train_end(summary(tmp_path, steps=3))
    frames(dash)
    assert view.shown[0] == ([1], [], 3) and view.shown[-1] == ([1, 2, 3], [2], 3)  # the final frame too
    assert view.value == "step 3"
    dash.reset()
    assert view.resets == 1


def test_an_evaluation_shows_how_far_it_is_and_its_time_left():
    """Issue 24: ~40 s of notebook 03 showed only "Evaluating…" at 0/20 or "ETA 0:00"."""
    dash = LiveDashboard(min_interval_s=0.0, background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info(total_steps=20))
    dash.on_phase("evaluating", "evaluating the loss on 43 held-out examples and answering them for exact match")
    dash.on_progress({"step": 0, "phase": "evaluating", "detail": "16 of 43 answered", "done": 16, "total": 43,
                      "elapsed_s": 15.0, "part_eta_s": 8.4, "eta_s": None})
    frames(dash)
    assert dash.status.value.endswith("answering them for exact match: 16 of 43 answered\u2026")
    # before training the run's time is not known yet: the part's own time left
    assert dash.progress_label.value == "0/20 · 0:15 elapsed · 16 of 43 answered · 0:08 left of this part"
    dash.on_phase("training", "training: step 1 of 20")
    for step in range(1, 21):
        dash.on_log(record(step, eta_s=None if step < 20 else 19.0))
    frames(dash)
    assert "ETA 0:19" in dash.progress_label.value  # the last step's ETA: the evaluation after training
    dash.on_phase("evaluating", "evaluating the loss on 43 held-out examples and answering them for exact match")
    dash.on_progress({"step": 20, "phase": "evaluating", "detail": "32 of 43 answered", "done": 32, "total": 43,
                      "elapsed_s": 80.0, "part_eta_s": 4.0, "eta_s": 12.0})
    frames(dash)
    assert dash.progress.value == 20
    assert dash.progress_label.value == "20/20 · 1:20 elapsed · 32 of 43 answered · ETA 0:12"
    assert "32 of 43 answered" in dash.status.value


def test_the_first_logged_step_draws_a_visible_point_on_an_axis_from_zero():
    """Issue 24: at step 2 the learning-rate plot was empty (a line through one point) and the loss axis read
    2.86-2.92."""
    dash = LiveDashboard(min_interval_s=0.0, background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info())
    dash.on_log(record(2, loss=2.89, learning_rate=2e-4))
    frames(dash)
    loss_ax, lr_ax, speed_ax, _ = dash._figure[1]
    for ax, value in ((loss_ax, 2.89), (lr_ax, 2e-4)):
        (line,) = ax.lines
        assert line.get_marker() == "o" and list(line.get_ydata()) == [value]  # a dot, where a line shows nothing
        low, high = ax.get_ylim()
        assert low == 0 and value < high < 2 * value  # the value on an axis from zero, not a zoom onto it
    assert speed_ax.lines[0].get_marker() == "o"
    for step in (4, 6):
        dash.on_log(record(step))
    dash.redraw()
    assert loss_ax.lines[0].get_marker() in ("None", "", None)  # a line once there are two points


def test_a_nearly_constant_series_is_drawn_inside_the_frame_not_on_its_edge():
    """Seen in the browser test's screenshot: a learning rate decaying over 100,000 steps (2e-4 to 1.9996e-4 in
    the steps shown) lay on the top edge of an axis from zero, where the frame hid it; an eval loss near the
    train loss's top sat on the edge too. Every point is at most 1/1.05 of the axis' top."""
    dash = LiveDashboard(min_interval_s=0.0, background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info(total_steps=100_000))
    for step in range(1, 187):
        dash.on_log(record(step, loss=10.8 - 0.5 * step / 186, learning_rate=2e-4 * (1 - step / 100_000)))
    dash.on_eval({"step": 150, "eval_loss": 10.79})
    frames(dash)
    loss_ax, lr_ax, _, _ = dash._figure[1]
    for ax in (loss_ax, lr_ax):
        top = max(max(line.get_ydata()) for line in ax.lines)
        assert ax.get_ylim() == pytest.approx((0, 1.05 * top))


def test_a_resumed_run_starts_the_bar_where_it_left_off(tmp_path):
    """Issue 24: on Resume the bar jumped back to 0/20 while the status said step 6 of 20."""
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"kind": "train", **record(s)}) + "\n"
                                                    for s in range(1, 7)))
    dash = LiveDashboard(background=False, first_draw_estimate_s=0.0)
    dash.on_train_start(info(total_steps=20, start_step=6, output_dir=str(tmp_path)))
    dash.on_phase("loading", "restoring the checkpoint")
    frames(dash)
    assert dash.progress.value == 6 and dash.progress_label.value.startswith("6/20")

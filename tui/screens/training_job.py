"""What the live view and the sweep view share: one thread worker at a time,
stopped on request and awaited until it has saved what it trained."""

from __future__ import annotations

from textual.worker import Worker, WorkerState


class TrainingJob:
    """Mixed into a screen whose worker (``job``) trains; ``request_stop``
    asks it to end at the next step."""

    job: Worker | None = None

    def request_stop(self) -> None:
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.state in (WorkerState.PENDING, WorkerState.RUNNING)

    async def stop_and_wait(self) -> None:
        """Stop the job and wait until what it trained is saved."""
        worker = self.job
        if worker is None or not self.busy:
            return
        self.request_stop()
        try:
            await worker.wait()
        except Exception:  # failed or cancelled: either way it has ended
            pass

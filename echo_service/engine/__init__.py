from echo_service.engine._executor import WorkerStats, WorkStealingExecutor

__all__ = ["WorkStealingExecutor", "WorkerStats"]

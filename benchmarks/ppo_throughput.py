"""PPO throughput on a task: env steps per second with 1, 2 and 4 envs, DummyVecEnv vs SubprocVecEnv.

Each setting trains PPO for ``--steps`` env steps (whole rollouts of ``steps / n_envs`` per env, so
every setting does the same work: one rollout and one PPO update of 10 epochs) and reports
``steps / wall time`` of ``learn`` (env construction and worker start-up excluded).

    python benchmarks/ppo_throughput.py --task digits-mlp --steps 256
"""

import argparse
import time

from arbiter_env.agents.sb3 import load_agent_config, make_rl_agent, make_vec_env, torch_threads


def measure(task: str, vec_env: str, n_envs: int, steps: int, threads: int | None) -> float:
    config = load_agent_config(
        "ppo",
        task=task,
        overrides=[
            f"vec_env={vec_env}",
            f"n_envs={n_envs}",
            f"hyperparams.n_steps={steps // n_envs}",
            f"torch_threads={'null' if threads is None else threads}",
        ],
    )
    venv = make_vec_env(config)
    try:
        with torch_threads(config.torch_threads):
            model = make_rl_agent("ppo", venv, config)
            started = time.perf_counter()
            model.learn(steps)
            return steps / (time.perf_counter() - started)
    finally:
        venv.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits-mlp")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--n-envs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--vec-envs", nargs="+", default=["dummy", "subproc"])
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per process (0: torch's default)"
    )
    args = parser.parse_args()
    threads = args.threads or None
    print(f"task={args.task} steps={args.steps} torch_threads={threads or 'default'}")
    print(f"{'vec_env':>8} {'n_envs':>6} {'steps/s':>8}")
    for vec_env in args.vec_envs:
        for n_envs in args.n_envs:
            rate = measure(args.task, vec_env, n_envs, args.steps, threads)
            print(f"{vec_env:>8} {n_envs:>6} {rate:>8.1f}", flush=True)


if __name__ == "__main__":
    main()

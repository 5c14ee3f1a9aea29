"""This project's conftest: deploybook's plugin loads through its pytest11 entry point.

Extend a release here with deploybook's hooks (see `pytest --help` and deploybook.plugin.hookspecs):

    def pytest_deploybook_check_workload(workload, service, environment, kube):
        '''A rule of this team's, for every workload once it has rolled out.'''
        scaled = workload.kind in ("Deployment", "StatefulSet")  # a Job's desired is its completions
        if scaled and workload.desired < 2 and environment.name == "prod":
            return [f"{workload.title} runs {workload.desired} replica(s) in prod; at least 2 expected"]
        return []

    def pytest_deploybook_check_manifests(service, environment, objects):
        '''A policy of this team's on the rendered manifests, before anything is applied.'''
        return [f"{o['kind']}/{o['metadata']['name']} has no team label"
                for o in objects if "team" not in (o["metadata"].get("labels") or {})]

    def pytest_deploybook_release_finished(record, run_dir):
        '''Publish the release record (run_dir / "release.json") elsewhere.'''
"""

"""Role assignments: the template, the docs' role table and Azure's built-in role IDs agree."""

from __future__ import annotations

import re
from pathlib import Path

from tests.infra import bicep

# Azure built-in role definition IDs, from Microsoft's "Azure built-in roles" reference (Storage and
# Monitor categories). Built-in IDs are the same in every tenant and cloud.
BUILTIN = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Reader": "43d0d8ad-25c7-4714-9337-8ba259a9fe05",
    "Log Analytics Reader": "73c42c96-874c-492b-b04d-ab87d138a893",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

HEADER = ["role", "role definition ID", "scope", "why"]


def doc_roles() -> dict[str, tuple[str, str]]:
    rows = bicep.markdown_table(bicep.DEPLOY_DOC.read_text(encoding="utf-8"), HEADER)
    assert rows, "docs/deploy.md's role table is empty"
    table = {}
    for role, guid, scope, why in rows:
        assert why, f"{role}: the table must say why the identity needs it"
        table[role.strip("*")] = (guid.strip("`"), scope)
    return table


def template_guids() -> dict[str, set[str]]:
    """Every GUID in the templates, by file (they are all role definition IDs)."""
    return {
        p.name: set(bicep.GUID.findall(bicep.strip_comments(p.read_text(encoding="utf-8"))))
        for p in bicep.bicep_files()
    }


def test_the_docs_table_names_built_in_roles_with_their_real_ids() -> None:
    for role, (guid, _scope) in doc_roles().items():
        assert role in BUILTIN, f"docs/deploy.md names {role!r}, which is not a built-in role this project uses"
        assert guid == BUILTIN[role], f"{role}: docs say {guid}, the built-in ID is {BUILTIN[role]}"


def test_the_template_assigns_exactly_the_roles_in_the_docs() -> None:
    documented = {guid for guid, _ in doc_roles().values()}
    used = set().union(*template_guids().values())
    assert used, "no role definition IDs found in infra/"
    assert used <= set(BUILTIN.values()), f"not built-in role IDs: {sorted(used - set(BUILTIN.values()))}"
    assert used == documented, (
        f"in the template, not the docs: {sorted(used - documented)}; in the docs, not the template: "
        f"{sorted(documented - used)}"
    )


def role_assignments(text: str) -> list[str]:
    """The body of every role assignment resource (up to its closing brace or bracket at column 0)."""
    starts = [
        m.end() for m in re.finditer(r"^resource \w+ 'Microsoft\.Authorization/roleAssignments@", text, re.MULTILINE)
    ]
    return [text[i : re.search(r"^[}\]]", text[i:], re.MULTILINE).end() + i] for i in starts]  # type: ignore[union-attr]


def test_every_role_assignment_is_built_in_and_names_its_principal() -> None:
    total = 0
    for path in bicep.bicep_files():
        text = bicep.strip_comments(path.read_text(encoding="utf-8"))
        for body in role_assignments(text):
            total += 1
            definition = re.search(r"roleDefinitionId: (.+)", body)
            assert definition, f"{path.name}: a role assignment without roleDefinitionId"
            assert definition.group(1).startswith("subscriptionResourceId('Microsoft.Authorization/roleDefinitions', ")
            assert "principalType: 'ServicePrincipal'" in body, f"{path.name}: a role assignment without principalType"
            # The principal in the name: a rotated identity gets new assignments instead of colliding with the old.
            assert re.search(r"name: guid\([^\n]*(principalId|identity\.id)", body), f"{path.name}: {body[:200]}"
    assert total >= 6, f"found only {total} role assignments in infra/"


def test_the_state_account_gets_blob_queue_and_table_data_roles() -> None:
    text = bicep.RESOURCES.read_text(encoding="utf-8")
    roles = bicep.object_strings(bicep.var_block(text, "roles"))
    state = re.search(r"^var stateRoles = \[(.*?)^\]", text, re.MULTILINE | re.DOTALL)
    assert state, "resources.bicep has no `var stateRoles = [...]`"
    ids = {roles[name] for name in re.findall(r"roles\.(\w+)", state.group(1))}
    names = {role for role, guid in BUILTIN.items() if guid in ids}
    assert names == {"Storage Blob Data Owner", "Storage Queue Data Contributor", "Storage Table Data Contributor"}
    table = doc_roles()
    for name in names:
        assert "state" in table[name][1].lower(), f"docs/deploy.md should scope {name} to the state account"


def test_each_source_kind_gets_its_reader_role() -> None:
    text = (bicep.INFRA / "modules" / "source-access.bicep").read_text(encoding="utf-8")
    for kind, role in (
        ("appInsights", "Monitoring Reader"),
        ("logAnalytics", "Log Analytics Reader"),
        ("exportStorage", "Storage Blob Data Reader"),
    ):
        block = re.search(rf"roleAssignments@[^']+' = if \(kind == '{kind}'\) \{{(.*?)\n\}}", text, re.DOTALL)
        assert block, f"no role assignment for {kind} sources"
        var = re.search(r"roleDefinitions', (\w+)\)", block.group(1))
        assert var and re.search(rf"^var {var.group(1)} = '{BUILTIN[role]}'", text, re.MULTILINE), f"{kind}: not {role}"


def test_every_role_assignment_can_be_left_to_an_administrator() -> None:
    """assignRoles=false: the template grants nothing, so hand-made grants never collide (RoleAssignmentExists)."""

    def guards(path: Path) -> list[str]:
        """The declaration and the loop line (if any) of every role assignment."""
        found = bicep.resources(path, "Microsoft.Authorization/roleAssignments")
        return [" ".join(line.strip() for line in body.splitlines()[:2]) for body in found.values()]

    assigned = guards(bicep.RESOURCES)
    assert len(assigned) == 2 and all(": if (assignRoles) {" in g or "= if (assignRoles) {" in g for g in assigned)
    for name in ("new-sink", "existing-sink"):
        [writer] = guards(bicep.INFRA / "modules" / f"{name}.bicep")
        assert "= if (assignRole) {" in writer, (name, writer)
    modules = bicep.modules(bicep.RESOURCES)
    for name in ("newSink", "existingSink"):
        assert "assignRole: assignRoles" in modules[name], name
    readers = [body for body in modules.values() if "'modules/source-access.bicep'" in body]
    assert len(readers) == 3 and all(": if (assignRoles) {" in body.splitlines()[1] for body in readers)
    doc = bicep.DEPLOY_DOC.read_text(encoding="utf-8")
    assert "`assignRoles`" in doc and "RoleAssignmentExists" in doc

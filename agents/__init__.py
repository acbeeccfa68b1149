"""Agents: a tool-calling loop over any model, structured output, teams as graphs, YAML configs.

>>> from baobab.agents import Agent
>>> from baobab.engine import ScriptedLLM
>>> Agent("echo", model=ScriptedLLM(["hello"])).run("Say hello").output
'hello'
"""

from baobab.agents.agent import Agent, AgentError, AgentResult, Example, ExampleCall
from baobab.agents.config import Config, read_config
from baobab.agents.events import AgentEvent, AgentFinished, ModelCalled, ToolCalled, listen
from baobab.agents.llm_router import LLMRouter, choose_option
from baobab.agents.state import Said, TeamState, describe_state, embedding_features
from baobab.agents.team import handoffs, pipeline, supervisor
from baobab.agents.workflow import Workflow
from baobab.agents.yaml_source import ConfigError

__all__ = ["Agent", "AgentError", "AgentEvent", "AgentFinished", "AgentResult", "Config", "ConfigError", "Example",
           "ExampleCall", "LLMRouter", "ModelCalled", "Said", "TeamState", "ToolCalled", "Workflow", "choose_option",
           "describe_state", "embedding_features", "handoffs", "listen", "pipeline", "read_config", "supervisor"]

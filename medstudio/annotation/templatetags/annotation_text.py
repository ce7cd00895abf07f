"""Question instructions are markdown, rendered and then sanitised with nh3 (no script, no style, no
event handlers; links get rel=noopener)."""
import markdown as md
import nh3
from django import template
from django.utils.safestring import mark_safe

register = template.Library()

TAGS = {"p", "br", "strong", "em", "b", "i", "ul", "ol", "li", "a", "code", "pre", "blockquote", "h3", "h4", "h5",
        "table", "thead", "tbody", "tr", "th", "td", "hr"}


def render_markdown(text: str) -> str:
    html = md.markdown(text or "", extensions=["tables", "sane_lists"], output_format="html")
    return nh3.clean(html, tags=TAGS, attributes={"a": {"href", "title"}}, link_rel="noopener noreferrer",
                     url_schemes={"http", "https", "mailto"})


@register.filter(name="markdown_safe")
def markdown_safe(text: str) -> str:
    return mark_safe(render_markdown(text))

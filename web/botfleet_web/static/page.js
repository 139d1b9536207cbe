// The fleet page's only script (the Content-Security-Policy allows no inline script).
// The "try it" box: posts the prompt to the serving API and shows the generated text as
// text (textContent: a generation is never parsed as HTML).
"use strict";

function setUpTryIt(form) {
  const output = form.querySelector("#try-it-output");
  const button = form.querySelector("button");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const prompt = form.querySelector("#try-it-prompt").value;
    button.disabled = true;
    output.textContent = "…";
    try {
      const response = await fetch(form.dataset.endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: form.dataset.model, prompt: prompt, max_tokens: 40 }),
      });
      const answer = await response.json();
      if (!response.ok) {
        const error = answer && answer.error;
        throw new Error((error && error.message) || response.statusText);
      }
      output.textContent = prompt + answer.choices[0].text;
      output.dataset.state = "done";
    } catch (error) {
      output.textContent = "Could not generate: " + error.message;
      output.dataset.state = "failed";
    } finally {
      button.disabled = false;
    }
  });
}

document.querySelectorAll("form.try-it").forEach(setUpTryIt);

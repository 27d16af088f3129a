// The passkey buttons of the pages: the one script they load, a progressive
// enhancement. Each `[data-passkey]` block stays hidden unless the browser
// can use passkeys; its button asks this site for options (a form post with
// the CSRF token), lets the browser talk to the authenticator, then submits
// the block's form with the answer, so the page flow ends like any form post.
(() => {
  const webauthn = window.SimpleWebAuthnBrowser;
  if (!webauthn?.browserSupportsWebAuthn()) return;

  const MESSAGES = {
    401: 'Your session ended. Reload the page and try again.',
    403: 'Confirm it is you first: sign out, sign in again, then add the passkey within five minutes.',
    429: 'Too many attempts. Wait a moment and try again.',
  };

  async function options(url, form) {
    const fields = new URLSearchParams({ csrf_token: form.elements.csrf_token.value });
    if (form.elements.mfa_token) fields.set('mfa_token', form.elements.mfa_token.value);
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: fields,
      credentials: 'same-origin',
    });
    if (!res.ok) throw new Error(MESSAGES[res.status] ?? 'The passkey could not be used. Try again.');
    return res.json();
  }

  for (const block of document.querySelectorAll('[data-passkey]')) {
    const form = block.querySelector('form');
    const button = block.querySelector('[data-passkey-start]');
    const status = block.querySelector('[data-passkey-status]');
    const answer = form.elements[block.dataset.responseField ?? 'response'];
    block.hidden = false;
    button.addEventListener('click', async () => {
      status.textContent = '';
      button.disabled = true;
      try {
        const optionsJSON = await options(block.dataset.optionsUrl, form);
        const response =
          block.dataset.passkey === 'register'
            ? await webauthn.startRegistration({ optionsJSON })
            : await webauthn.startAuthentication({ optionsJSON });
        answer.value = JSON.stringify(response);
        if (form.elements.challenge_id) form.elements.challenge_id.value = optionsJSON.challenge_id;
        form.submit();
      } catch (error) {
        status.textContent =
          error?.name === 'NotAllowedError'
            ? 'The passkey request was cancelled or timed out.'
            : (error?.message ?? 'The passkey could not be used.');
        button.disabled = false;
      }
    });
  }
})();

// Following a conversation as it grows, the way a chat reader expects: while the reader is at
// the foot of the page, new messages and streaming text keep the foot in view; once they scroll
// up to read, the page holds still and a "Jump to latest" control appears, which scrolls back
// down and follows again. Reaching the foot by scrolling follows again too.
//
// What grows is watched (a ResizeObserver on the column that holds the messages and the
// composer), not each piece of text appended: a new turn, streaming text, the stored answer
// swapped in for the live one and the composer's Settings opening all change its size. Only a scroll upwards stops the following: growth below the reader does not
// scroll the page, and a page that shrinks under the reader (a thinking block folding up) is
// clamped by the browser to a foot that is still in view.

const NEAR_FOOT_PX = 48; // closer to the foot than this counts as being at it

// The page's scroll padding keeps what is scrolled into view (a focused field, a found word)
// clear of the sticky site navigation and composer: the composer's height is measured here.
function padForComposer(composer) {
  const root = document.documentElement;
  new ResizeObserver(() => {
    root.style.setProperty("--composer-height", composer.offsetHeight + "px");
  }).observe(composer);
}

export function followConversation(column, jumpControl) {
  padForComposer(column.querySelector("#composer"));
  const page = document.scrollingElement;
  let following = true;
  let lastTop = page.scrollTop;

  const fromFoot = () => page.scrollHeight - page.scrollTop - page.clientHeight;
  const showControl = () => {
    jumpControl.hidden = following || fromFoot() <= NEAR_FOOT_PX;
  };
  const toFoot = () => {
    following = true;
    page.scrollTop = page.scrollHeight;
    showControl();
  };

  addEventListener(
    "scroll",
    () => {
      const top = page.scrollTop;
      if (top < lastTop - 1) following = false;
      if (fromFoot() <= NEAR_FOOT_PX) following = true;
      lastTop = top;
      showControl();
    },
    { passive: true },
  );
  new ResizeObserver(() => (following ? toFoot() : showControl())).observe(column);
  jumpControl.addEventListener("click", toFoot);
  toFoot(); // a conversation opens at its latest message
  // Hold still: the reader is about to work on something above the foot (an edit box).
  const hold = () => {
    following = false;
    showControl();
  };
  return { toFoot, hold, isFollowing: () => following };
}
